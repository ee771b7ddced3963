import { host } from './host.mjs';
/** @param {string} name */
export function isSet(name) {
  return host.secrets.has(name);
}
