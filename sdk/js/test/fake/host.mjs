// The fake host's state, shared by the fake interfaces: what was logged,
// the HTTP handler a test installs, the key-value map and the secrets set.

export const host = {
  /** @type {[string, string][]} */
  logs: [],
  /** @type {any[]} */
  requests: [],
  /** @type {(req: any) => any} */
  handler: () => {
    throw Object.assign(new Error('no handler'), { payload: { tag: 'connection-failed', val: 'no handler' } });
  },
  /** @type {Map<string, Uint8Array> | null} null: not granted */
  kv: new Map(),
  kvQuota: 1024,
  /** @type {Set<string>} */
  secrets: new Set(),
  reset() {
    this.logs = [];
    this.requests = [];
    this.kv = new Map();
    this.kvQuota = 1024;
    this.secrets = new Set();
    this.handler = () => {
      throw Object.assign(new Error('no handler'), { payload: { tag: 'connection-failed', val: 'no handler' } });
    };
  },
};

/** Throws as the bindings throw a WIT `err`. @param {any} payload */
export function witErr(payload) {
  throw Object.assign(new Error(`${JSON.stringify(payload)} (see error.payload)`), { payload });
}
