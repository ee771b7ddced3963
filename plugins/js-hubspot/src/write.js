// Writes through HubSpot's batch endpoints: a record without destination
// id is created (`batch/create`), one with an id updated (`batch/update`).
// Creates are idempotent: the host's key goes into the
// `nexo_idempotency_key` property and, before creating, a search finds the
// keys already there, whose contacts are updated instead — a create whose
// answer was lost is not repeated. HubSpot refuses a whole batch (400) when
// one input is invalid; that chunk is then sent one by one, so only the
// invalid records fail (`rejected`, dead-lettered by the host).

import { Internal, Rejected, errorForStatus, outcome, payloadOf } from 'nexo-sdk';
import { request } from './api.js';
import { KEY_PROPERTY, properties } from './contact.js';

/** HubSpot's limit on inputs per batch and values per `IN` filter. */
const CHUNK = 100;

/**
 * @typedef {{index: number, id: string | undefined, properties: Record<string, string>, key: string}} Upsert
 */

/**
 * @template T
 * @param {T[]} list
 * @returns {T[][]}
 */
function chunks(list) {
  const out = [];
  for (let i = 0; i < list.length; i += CHUNK) out.push(list.slice(i, i + CHUNK));
  return out;
}

/**
 * The message HubSpot put in an error answer, else the status.
 * @param {import('nexo-sdk').Response} response
 * @param {string} what
 */
function failure(response, what) {
  const e = errorForStatus(response, what) ?? new Internal(`${what}: unexpected status ${response.status}`);
  let message;
  try {
    message = JSON.parse(response.text()).message;
  } catch {
    message = undefined;
  }
  if (typeof message === 'string' && (e instanceof Rejected || e.tag === 'auth')) {
    e.message = `${what}: ${message}`;
  }
  return e;
}

/**
 * @param {import('./api.js').Config} config
 * @param {string} stream
 * @param {import('nexo-sdk').Wit.WriteRecord[]} batch
 */
export function writeBatch(config, stream, batch) {
  /** @type {any[]} */
  const outcomes = new Array(batch.length);
  /** @type {Upsert[]} */
  const upserts = [];
  batch.forEach((record, index) => {
    if (record.operation === 'delete') {
      outcomes[index] = outcome.failed(new Rejected(`${stream} ${record.id}: this connector does not delete contacts; nothing was sent`));
      return;
    }
    try {
      upserts.push({ index, id: record.id === '' ? undefined : record.id, properties: properties(record, payloadOf(record)), key: record.idempotencyKey });
    } catch (e) {
      outcomes[index] = outcome.failed(e);
    }
  });

  // Creates already applied (answer lost, run retried) become updates.
  const known = existingKeys(config, stream, upserts.filter((u) => u.id === undefined && u.key !== '').map((u) => u.key));
  for (const u of upserts) {
    if (u.id === undefined && known.has(u.key)) u.id = known.get(u.key);
  }
  for (const chunk of chunks(upserts.filter((u) => u.id === undefined))) {
    for (const [index, o] of create(config, stream, chunk)) outcomes[index] = o;
  }
  for (const chunk of chunks(upserts.filter((u) => u.id !== undefined))) {
    for (const [index, o] of update(config, stream, chunk)) outcomes[index] = o;
  }
  return outcomes;
}

/**
 * Ids of the contacts already holding these idempotency keys.
 * @param {import('./api.js').Config} config
 * @param {string} stream
 * @param {string[]} keys
 * @returns {Map<string, string>}
 */
function existingKeys(config, stream, keys) {
  /** @type {Map<string, string>} */
  const found = new Map();
  for (const chunk of chunks(keys)) {
    let after = '0';
    for (;;) {
      const body = {
        filterGroups: [{ filters: [{ propertyName: KEY_PROPERTY, operator: 'IN', values: chunk }] }],
        sorts: [],
        properties: [KEY_PROPERTY],
        limit: 200,
        after,
      };
      const answer = request(config, 'post', `/crm/v3/objects/${stream}/search`).json(body).send().errorForStatus('looking up idempotency keys').json();
      for (const object of answer.results ?? []) {
        const key = object.properties?.[KEY_PROPERTY];
        if (typeof key === 'string' && !found.has(key)) found.set(key, String(object.id));
      }
      const next = answer.paging?.next?.after;
      if (next === undefined) break;
      after = String(next);
    }
  }
  return found;
}

/** @param {Upsert} u */
function withKey(u) {
  return u.key === '' ? u.properties : { ...u.properties, [KEY_PROPERTY]: u.key };
}

/**
 * @param {string} stream
 * @param {Upsert} u
 */
function what(stream, u) {
  return u.id !== undefined ? `${stream} ${u.id}` : `new ${stream} (key ${u.key})`;
}

/**
 * @param {import('./api.js').Config} config
 * @param {string} stream
 * @param {Upsert[]} chunk
 * @returns {[number, any][]}
 */
function create(config, stream, chunk) {
  const response = request(config, 'post', `/crm/v3/objects/${stream}/batch/create`)
    .json({ inputs: chunk.map((u) => ({ properties: withKey(u), associations: [] })) })
    .send();
  if (response.status === 400) {
    // One invalid input refuses the batch: find which, one by one.
    return chunk.map((u) => {
      const r = request(config, 'post', `/crm/v3/objects/${stream}`).json({ properties: withKey(u), associations: [] }).send();
      if (r.status >= 200 && r.status < 300) return [u.index, outcome.created(idOf(r.json()))];
      if (r.status === 400) return [u.index, outcome.failed(failure(r, what(stream, u)))];
      throw failure(r, what(stream, u));
    });
  }
  if (response.status < 200 || response.status >= 300) throw failure(response, `creating ${chunk.length} ${stream}`);
  const results = response.json().results ?? [];
  // HubSpot does not promise the inputs' order: match by key.
  /** @type {Map<string, any>} */
  const byKey = new Map();
  for (const r of results) {
    const key = r.properties?.[KEY_PROPERTY];
    if (typeof key === 'string') byKey.set(key, r);
  }
  return chunk.map((u, i) => {
    const r = u.key !== '' ? byKey.get(u.key) : results[i];
    if (r === undefined) throw new Internal(`HubSpot's batch create did not answer for ${what(stream, u)}`);
    return [u.index, outcome.created(idOf(r))];
  });
}

/**
 * @param {import('./api.js').Config} config
 * @param {string} stream
 * @param {Upsert[]} chunk
 * @returns {[number, any][]}
 */
function update(config, stream, chunk) {
  const response = request(config, 'post', `/crm/v3/objects/${stream}/batch/update`)
    .json({ inputs: chunk.map((u) => ({ id: u.id, properties: u.properties })) })
    .send();
  if (response.status === 400) {
    return chunk.map((u) => {
      const r = request(config, 'patch', `/crm/v3/objects/${stream}/${encodeURIComponent(String(u.id))}`).json({ properties: u.properties }).send();
      if (r.status >= 200 && r.status < 300) return [u.index, outcome.updated(String(u.id))];
      if (r.status === 404) return [u.index, outcome.failed(new Rejected(`${stream} ${u.id} no longer exists in HubSpot`))];
      if (r.status === 400) return [u.index, outcome.failed(failure(r, what(stream, u)))];
      throw failure(r, what(stream, u));
    });
  }
  if (response.status < 200 || response.status >= 300) throw failure(response, `updating ${chunk.length} ${stream}`);
  // 207: the ids HubSpot could not find are listed in the errors' context.
  const missing = new Set((response.json().errors ?? []).flatMap((/** @type {any} */ e) => e.context?.ids ?? []));
  return chunk.map((u) => [u.index, missing.has(u.id) ? outcome.failed(new Rejected(`${stream} ${u.id} no longer exists in HubSpot`)) : outcome.updated(String(u.id))]);
}

/** @param {any} object */
function idOf(object) {
  if (object?.id === undefined || object?.id === null) {
    throw new Internal(`HubSpot answered a write without an id: ${JSON.stringify(object)}`);
  }
  return String(object.id);
}
