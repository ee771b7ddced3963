// The host's log import, the only one both worlds have. Kept apart from the
// connector-only imports (host-net.js) so that a mapper's component imports
// nothing its world does not offer; the SDK's unit tests map these
// specifiers to fakes (test/register.mjs).

export { log as witLog } from 'nexo:connector/log@1.1.0';
