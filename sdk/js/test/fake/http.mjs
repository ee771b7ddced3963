import { host } from './host.mjs';
/** @param {any} request */
export function send(request) {
  host.requests.push(request);
  return host.handler(request);
}
