// The plugin's small key-value store (`nexo:connector/kv`), private to one
// plugin and connection, with text and JSON helpers. Failures are SDK
// errors: storage not granted → access-denied, quota → internal (the
// plugin declared too little), the host's storage → transient.

import { witKvDelete, witKvGet, witKvListKeys, witKvSet } from './host-net.js';
import { AccessDenied, Internal, NexoError, Transient } from './errors.js';
import { decodeUtf8, encodeUtf8 } from './utf8.js';
import { fromU64 } from './u64.js';

/**
 * @param {unknown} e
 * @param {string} what
 * @returns {NexoError}
 */
export function kvFailure(e, what) {
  const p = /** @type {any} */ (e !== null && typeof e === 'object' && 'payload' in e ? /** @type {any} */ (e).payload : e);
  switch (p && typeof p === 'object' ? p.tag : undefined) {
    case 'not-granted':
      return new AccessDenied(`${what}: this plugin has no key-value storage (declare kv_bytes in the manifest and have the admin grant it)`);
    case 'quota-exceeded':
      return new Internal(`${what}: the key-value quota of ${fromU64(p.val)} bytes would be exceeded`);
    case 'invalid-key':
      return new Internal(`${what}: invalid key: ${p.val}`);
    case 'storage':
      return new Transient(`${what}: the host's storage failed: ${p.val}`);
    default:
      return new Internal(`${what}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * @template T
 * @param {string} what
 * @param {() => T} fn
 * @returns {T}
 */
function call(what, fn) {
  try {
    return fn();
  } catch (e) {
    throw kvFailure(e, what);
  }
}

/** The key-value store. */
export const kv = Object.freeze({
  /**
   * @param {string} key
   * @returns {Uint8Array | undefined}
   */
  get: (key) => call(`kv get ${key}`, () => witKvGet(key)),
  /**
   * @param {string} key
   * @param {Uint8Array} value
   */
  set: (key, value) => call(`kv set ${key}`, () => witKvSet(key, value)),
  /** @param {string} key */
  delete: (key) => call(`kv delete ${key}`, () => witKvDelete(key)),
  /**
   * Keys starting with `prefix`, sorted.
   * @param {string} prefix
   * @returns {string[]}
   */
  listKeys: (prefix) => call(`kv list ${prefix}`, () => witKvListKeys(prefix)),
  /**
   * @param {string} key
   * @returns {string | undefined}
   */
  getText(key) {
    const v = kv.get(key);
    return v === undefined ? undefined : decodeUtf8(v);
  },
  /**
   * @param {string} key
   * @param {string} text
   */
  setText: (key, text) => kv.set(key, encodeUtf8(text)),
  /**
   * @param {string} key
   * @returns {any}
   */
  getJson(key) {
    const t = kv.getText(key);
    if (t === undefined) {
      return undefined;
    }
    try {
      return JSON.parse(t);
    } catch (e) {
      throw new Internal(`kv ${key} does not hold JSON: ${e instanceof Error ? e.message : e}`);
    }
  },
  /**
   * @param {string} key
   * @param {unknown} value
   */
  setJson: (key, value) => kv.setText(key, JSON.stringify(value)),
});
