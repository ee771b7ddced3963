// Nexo connector for HubSpot's CRM contacts, written in JavaScript with
// nexo-sdk: the same contract and payloads as the Rust `nexo/hubspot`
// connector's `contacts` stream.
//
// A record's payload is flat: `id`, `updatedAt` (the cursor, ISO 8601 with
// milliseconds) and the contact's properties as top-level string fields,
// without the ones HubSpot maintains itself. Reads are incremental
// (read.js): the search API on `hs_lastmodifieddate`, sorted ascending,
// paged, ties on the cursor handled by the SDK's Cursor. Writes (write.js)
// create through `batch/create` with the host's idempotency key in the
// custom property `nexo_idempotency_key` (looked up first, so a create
// whose answer was lost is not repeated) and update by id.

import { connector, info } from 'nexo-sdk';
import { API, TOKEN, request } from './api.js';
import { readPage } from './read.js';
import { writeBatch } from './write.js';

export const operations = connector({
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      page_size: { type: 'integer', minimum: 1, maximum: 200, default: 100, description: 'Contacts per search page (1-200)' },
      timeout_ms: { type: 'integer', minimum: 1, description: "Timeout of each request in milliseconds; the host's own limit when absent" },
      properties: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'Contact properties to read; the defaults when absent' },
    },
  },
  streams: [
    {
      name: 'contacts',
      jsonSchema: {
        type: 'object',
        properties: { id: { type: 'string' }, updatedAt: { type: 'string' } },
        additionalProperties: { type: ['string', 'number', 'boolean', 'null'] },
      },
      primaryKey: ['id'],
      cursorField: 'updatedAt',
      canWrite: true,
    },
  ],
  capabilities: {
    httpOrigins: [API],
    secrets: [{ name: TOKEN, description: 'HubSpot private app access token (Settings → Integrations → Private apps)', origins: [API] }],
  },
  check(config) {
    request(config, 'get', '/crm/v3/objects/contacts').query('limit', 1).send().errorForStatus('reading one contact');
    info(`connected to HubSpot at ${API}`);
  },
  read: readPage,
  write: writeBatch,
});
