import { host, witErr } from './host.mjs';

function store() {
  if (host.kv === null) {
    witErr({ tag: 'not-granted' });
  }
  return /** @type {Map<string, Uint8Array>} */ (host.kv);
}
/** @param {string} key */
export function get(key) {
  return store().get(key);
}
/** @param {string} key @param {Uint8Array} value */
function set(key, value) {
  const s = store();
  let used = value.length + key.length;
  for (const [k, v] of s) if (k !== key) used += k.length + v.length;
  if (used > host.kvQuota) witErr({ tag: 'quota-exceeded', val: host.kvQuota });
  s.set(key, value);
}
/** @param {string} key */
function del(key) {
  store().delete(key);
}
/** @param {string} prefix */
export function listKeys(prefix) {
  return [...store().keys()].filter((k) => k.startsWith(prefix)).sort();
}
export { set, del as delete };
