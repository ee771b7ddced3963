// The connector world's own imports: HTTP, secrets and key-value storage.
// build.mjs replaces this module with host-net-mapper.js when it builds a
// mapper, whose world imports none of them.

export { send as witSend } from 'nexo:connector/http@1.1.0';
export { isSet as witIsSet } from 'nexo:connector/secrets@1.1.0';
export {
  get as witKvGet,
  set as witKvSet,
  delete as witKvDelete,
  listKeys as witKvListKeys,
} from 'nexo:connector/kv@1.1.0';
