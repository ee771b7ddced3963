// HubSpot's API as the connector reaches it: the one origin it declares,
// the token as a secret template, the configured timeout.

import { http } from 'nexo-sdk';

/**
 * HubSpot's API, the one origin the connector calls. A sandbox is reached
 * through the connection's origin override, which the host applies.
 */
export const API = 'https://api.hubapi.com';

/** The secret holding the access token. */
export const TOKEN = 'api_token';

/** @typedef {{page_size: number, timeout_ms?: number, properties?: string[]}} Config */

/**
 * A request to `path` with the token and the configured timeout.
 * @param {Config} config
 * @param {'get' | 'post' | 'patch'} method
 * @param {string} path
 */
export function request(config, method, path) {
  const r = http[method](`${API}${path}`).bearerSecret(TOKEN);
  return config.timeout_ms === undefined ? r : r.timeoutMs(config.timeout_ms);
}
