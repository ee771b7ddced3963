// {{name}}: a Nexo connector for a REST contacts API, in JavaScript. One
// stream, `contacts`, read incrementally by `updated_at` and written back
// with idempotent creates, updates and deletes.
//
// The API (bearer token, the `api_token` secret):
// - GET /api/contacts?updated_after=T&limit=N&page_token=P answers
//   {"results": [...], "next_page_token": "..." | null}; a result is a
//   contact or a tombstone {"id", "deleted": true, "updated_at"}, ordered by
//   (updated_at, id), updated_after inclusive;
// - POST /api/contacts with an Idempotency-Key header: 201 with the new
//   contact, or 200 with the contact already created for that key;
// - PUT /api/contacts/{id} replaces, DELETE /api/contacts/{id} deletes (404
//   when unknown).
//
// Errors: errorForStatus throws the class an answer implies — 401 → auth,
// 429 → rate-limited (from Retry-After), 5xx → transient (the host
// retries), other 4xx → rejected, which fails that record alone in write.

import { Cursor, Internal, InvalidConfig, Rejected, connector, http, outcome, payloadOf, remove, upsert } from 'nexo-sdk';

const STREAM = 'contacts';
const ANY = ['https://*:*', 'http://*:*'];

export const operations = connector({
  configSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['base_url'],
    properties: {
      base_url: { type: 'string', description: 'Base URL of the API, e.g. https://crm.example.com' },
      page_size: { type: 'integer', minimum: 1, maximum: 5000, default: 100, description: 'Records per page (1-5000)' },
    },
  },
  streams: [
    {
      name: STREAM,
      jsonSchema: {
        type: 'object',
        required: ['id', 'email', 'updated_at'],
        properties: { id: { type: 'string' }, email: { type: 'string' }, updated_at: { type: 'string' } },
      },
      primaryKey: ['id'],
      cursorField: 'updated_at',
      canWrite: true,
    },
  ],
  // The API's host is the customer's: declare any origin, the admin's grant
  // names the real one.
  capabilities: {
    httpOrigins: ANY,
    secrets: [{ name: 'api_token', description: 'API token of the contacts API', origins: ANY }],
  },
  check(config) {
    request(config, 'get', '/api/contacts').query('limit', 1).send().errorForStatus('listing contacts');
  },
  read(config, stream, state) {
    checkStream(stream);
    // The state is the last (updated_at, id) seen plus the page token of a
    // listing in progress: a read resumes where the last page ended.
    const cursor = Cursor.fromState(state);
    const from = cursor.queryValue();
    const page = request(config, 'get', '/api/contacts')
      .query('updated_after', from ?? '')
      .query('limit', config.page_size)
      .query('page_token', cursor.pageToken ?? '')
      .send()
      .errorForStatus('listing contacts')
      .json();
    const next = Cursor.fromJSONValue(cursor.toJSON());
    const records = [];
    for (const row of page.results ?? []) {
      if (typeof row.id !== 'string' || typeof row.updated_at !== 'string') {
        throw new Internal('the API sent a contact without `id` or `updated_at`');
      }
      // updated_after is inclusive: skip what the last page ended on.
      if (cursor.isSeen(row.updated_at, row.id)) continue;
      next.observe(row.updated_at, row.id);
      records.push(row.deleted === true ? remove(stream, row.id, row.updated_at) : upsert(stream, row.id, row, row.updated_at));
    }
    const token = page.next_page_token ?? undefined;
    next.setPage(token, from);
    return { records, state: next.toState(), hasMore: token !== undefined };
  },
  write(config, stream, batch) {
    checkStream(stream);
    return batch.map((record) => {
      try {
        return writeOne(config, record);
      } catch (e) {
        // Refused: this record alone fails (the host dead-letters it);
        // anything else ends the call and the host retries the batch with
        // the same idempotency keys.
        if (e instanceof Rejected) return outcome.failed(e);
        throw e;
      }
    });
  },
});

function checkStream(stream) {
  if (stream !== STREAM) throw new InvalidConfig(`unknown stream \`${stream}\`; this connector has ${STREAM}`);
}

/** A request to `path` with the `api_token` secret (the host puts the value in). */
function request(config, method, path) {
  const base = String(config.base_url ?? '').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) {
    throw new InvalidConfig(`field \`base_url\`: \`${config.base_url}\` is not an http(s) URL`);
  }
  return http[method](`${base}${path}`).bearerSecret('api_token');
}

/** `id` as one URL path segment, so that no id reaches another endpoint. */
function segment(id) {
  if (id === '' || id === '.' || id === '..') throw new Rejected(`\`${id}\` is not a contact id`);
  return encodeURIComponent(id);
}

function put(config, id, body) {
  request(config, 'put', `/api/contacts/${segment(id)}`).json(body).send().errorForStatus(`contact ${id}`);
}

function writeOne(config, record) {
  if (record.operation === 'delete') {
    if (record.id === '') throw new Rejected("a delete needs the contact's id and this record has none");
    const response = request(config, 'delete', `/api/contacts/${segment(record.id)}`).send();
    // Already gone is what a delete wants: a retried delete succeeds.
    if (response.status !== 404) response.errorForStatus(`contact ${record.id}`);
    return outcome.deleted(record.id);
  }
  const { id: _id, updated_at: _updated, ...body } = payloadOf(record);
  if (record.id !== '') {
    put(config, record.id, body);
    return outcome.updated(record.id);
  }
  // The host gives every create a key that stays the same when it retries:
  // a create whose answer was lost makes no duplicate.
  const response = request(config, 'post', '/api/contacts')
    .header('Idempotency-Key', record.idempotencyKey)
    .json(body)
    .send()
    .errorForStatus(`new contact (key ${record.idempotencyKey})`);
  const created = response.json();
  if (response.status === 200) {
    // Created by an earlier attempt: bring it up to date.
    put(config, created.id, body);
    return outcome.updated(created.id);
  }
  return outcome.created(created.id);
}
