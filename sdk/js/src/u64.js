// WIT u64 values cross the component boundary as a Number with
// componentize-qjs (it refuses a BigInt: "expected number ... big_int") and
// as a BigInt with componentize-js (SpiderMonkey). Plugins use plain
// numbers; the SDK converts at the boundary. A build for a BigInt backend
// sets globalThis.__nexoU64BigInt = true before the plugin runs.

/**
 * A non-negative integer as the backend wants a WIT u64.
 * @param {number | bigint} n
 * @returns {number | bigint}
 */
export function toU64(n) {
  const v = typeof n === 'bigint' ? n : BigInt(Math.max(0, Math.trunc(Number(n) || 0)));
  return /** @type {any} */ (globalThis).__nexoU64BigInt ? v : Number(v);
}

/**
 * A WIT u64 from the host as a Number (exact up to 2^53).
 * @param {number | bigint} v
 * @returns {number}
 */
export function fromU64(v) {
  return typeof v === 'bigint' ? Number(v) : v;
}
