// One error class per case of the WIT `error` variant. Throwing one from a
// connector or mapper operation ends the call with that case; any other
// exception becomes `internal` with its message (see toWitError), so a bug
// is reported, never a trap.

import { toU64 } from './u64.js';

/** The base of the SDK's errors; `tag` is the WIT case. */
export class NexoError extends Error {
  /**
   * @param {string} tag the WIT `error` case
   * @param {string} message
   */
  constructor(tag, message) {
    super(message);
    this.name = new.target.name;
    /** @type {string} */
    this.tag = tag;
  }

  /** The WIT value: `{tag, val}`. */
  toWit() {
    return { tag: this.tag, val: this.message };
  }
}

/** The configuration is wrong; a person must fix it. Not retried. */
export class InvalidConfig extends NexoError {
  /** @param {string} message */
  constructor(message) {
    super('invalid-config', message);
  }
}

/** Credentials are missing, wrong or expired. Not retried. */
export class AuthError extends NexoError {
  /** @param {string} message */
  constructor(message) {
    super('auth', message);
  }
}

/** The system or the host refused this operation. Not retried. */
export class AccessDenied extends NexoError {
  /** @param {string} message */
  constructor(message) {
    super('access-denied', message);
  }
}

/** The system asked to slow down; the host retries after `retryAfterMs`. */
export class RateLimited extends NexoError {
  /**
   * @param {number} retryAfterMs
   * @param {string} [message]
   */
  constructor(retryAfterMs, message) {
    const ms = Math.max(0, Math.round(Number(retryAfterMs) || 0));
    super('rate-limited', message ?? `rate limited; retry after ${ms} ms`);
    /** @type {number} */
    this.retryAfterMs = ms;
  }

  toWit() {
    return { tag: this.tag, val: toU64(this.retryAfterMs) };
  }
}

/** A passing failure (timeout, 5xx); retried with backoff. */
export class Transient extends NexoError {
  /** @param {string} message */
  constructor(message) {
    super('transient', message);
  }
}

/** This record only was refused; it goes to the dead-letter queue. */
export class Rejected extends NexoError {
  /** @param {string} message */
  constructor(message) {
    super('rejected', message);
  }
}

/** A bug in the plugin or the system; not retried. */
export class Internal extends NexoError {
  /** @param {string} message */
  constructor(message) {
    super('internal', message);
  }
}

/**
 * Any thrown value as a WIT `error`: an SDK error keeps its case, a WIT
 * value `{tag, val}` passes through, anything else is `internal` with its
 * message.
 * @param {unknown} e
 * @returns {{tag: string, val: string | number | bigint}}
 */
export function toWitError(e) {
  if (e instanceof NexoError) {
    return e.toWit();
  }
  if (e !== null && typeof e === 'object' && typeof (/** @type {any} */ (e).tag) === 'string' && WIT_CASES.has(/** @type {any} */ (e).tag)) {
    const { tag, val } = /** @type {any} */ (e);
    return tag === 'rate-limited' ? { tag, val: toU64(Number(val) || 0) } : { tag, val: String(val) };
  }
  if (e instanceof Error) {
    return { tag: 'internal', val: `${e.name}: ${e.message}` };
  }
  return { tag: 'internal', val: `uncaught ${typeof e}: ${String(e)}` };
}

/** The WIT `error` cases. */
const WIT_CASES = new Set(['invalid-config', 'auth', 'access-denied', 'rate-limited', 'transient', 'rejected', 'internal']);

/**
 * Runs `fn`; whatever it throws is rethrown as the WIT value the bindings
 * turn into `err(...)`.
 * @template T
 * @param {() => T} fn
 * @returns {T}
 */
export function witCall(fn) {
  try {
    return fn();
  } catch (e) {
    throw toWitError(e);
  }
}
