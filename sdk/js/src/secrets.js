// Secrets by reference: a plugin learns whether a secret is configured,
// never its value (it sends `{{secret:NAME}}`, see http.js).

import { witIsSet } from './host-net.js';
import { AuthError } from './errors.js';

/**
 * Whether the secret is configured for this connection.
 * @param {string} name
 */
export function isSet(name) {
  return witIsSet(name);
}

/**
 * Throws `auth` naming the secret when it is not configured.
 * @param {string} name
 */
export function requireSecret(name) {
  if (!witIsSet(name)) {
    throw new AuthError(`the secret \`${name}\` is not set for this connection; an admin sets it on the connection`);
  }
}
