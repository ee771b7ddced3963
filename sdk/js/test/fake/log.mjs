import { host } from './host.mjs';
/** @param {string} level @param {string} message */
export function log(level, message) {
  host.logs.push([level, message]);
}
