// Structured logging into the host's logs, and a `console` that forwards
// to it: QuickJS has no console, and a plugin's (or a library's)
// console.log would otherwise throw "console is not defined".

import { witLog } from './host-log.js';

/** @typedef {'trace' | 'debug' | 'info' | 'warn' | 'error'} Level */

/**
 * @param {unknown} v
 * @returns {string}
 */
function show(v) {
  if (typeof v === 'string') {
    return v;
  }
  if (v instanceof Error) {
    return `${v.name}: ${v.message}`;
  }
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s;
  } catch {
    return String(v);
  }
}

/**
 * Log at `level`; arguments are joined as console.log joins them.
 * @param {Level} level
 * @param {...unknown} parts
 */
export function log(level, ...parts) {
  witLog(level, parts.map(show).join(' '));
}

export const trace = (/** @type {unknown[]} */ ...p) => log('trace', ...p);
export const debug = (/** @type {unknown[]} */ ...p) => log('debug', ...p);
export const info = (/** @type {unknown[]} */ ...p) => log('info', ...p);
export const warn = (/** @type {unknown[]} */ ...p) => log('warn', ...p);
export const error = (/** @type {unknown[]} */ ...p) => log('error', ...p);

/** A console whose methods write to the host's log. */
export const hostConsole = Object.freeze({
  log: info,
  info,
  debug,
  trace,
  warn,
  error,
});

/** Installs {@link hostConsole} as the global `console` where there is none. */
export function installConsole() {
  const g = /** @type {any} */ (globalThis);
  if (typeof g.console === 'undefined') {
    g.console = hostConsole;
  }
}
