// nexo-sdk for JavaScript: write a Nexo connector or mapper as an ES module
// and build it into a WebAssembly component with `node sdk/js/build.mjs`.
//
//   import { connector, http, upsert, Cursor } from 'nexo-sdk';
//   export const operations = connector({ ... });
//
// Importing the SDK also gives QuickJS (which has none) a `console` that
// writes to the host's log.

import { installConsole } from './log.js';

installConsole();

export { SDK_VERSION, WIT_VERSION } from './version.js';
export { connector, mapper, SDK_NAME } from './plugin.js';
export {
  NexoError,
  InvalidConfig,
  AuthError,
  AccessDenied,
  RateLimited,
  Transient,
  Rejected,
  Internal,
  toWitError,
} from './errors.js';
export { http, Request, Response, secret, errorForStatus, excerpt } from './http.js';
export { kv } from './kv.js';
export { isSet, requireSecret } from './secrets.js';
export { log, trace, debug, info, warn, error, hostConsole } from './log.js';
export { encodeUtf8, decodeUtf8 } from './utf8.js';
export { toU64, fromU64 } from './u64.js';
export { Cursor } from './cursor.js';
export { validate, withDefaults, parseConfig } from './schema.js';
export { upsert, remove, payloadOf, outcome } from './records.js';
