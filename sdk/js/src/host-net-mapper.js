// Stands in for host-net.js in a mapper's build: a mapper gets no network,
// secrets or storage, so each of these fails with a message that says so.

/** @param {string} what */
function refused(what) {
  return () => {
    throw new Error(`a mapper has no ${what}; only a connector may use it`);
  };
}

export const witSend = refused('HTTP');
export const witIsSet = () => false;
export const witKvGet = refused('key-value storage');
export const witKvSet = refused('key-value storage');
export const witKvDelete = refused('key-value storage');
export const witKvListKeys = refused('key-value storage');
