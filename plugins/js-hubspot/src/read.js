// Incremental reads through HubSpot's search endpoint, the way HubSpot
// recommends syncing changes: `hs_lastmodifieddate GTE` the cursor, sorted
// ascending, paged with `after` (an offset HubSpot caps at 10 000 results,
// past which the query restarts from the newest value read). The state is
// the SDK's Cursor: the newest `updatedAt` read and the ids read at it, so
// contacts sharing a timestamp are neither skipped nor read twice.

import { Cursor, Internal, upsert } from 'nexo-sdk';
import { request } from './api.js';
import { DEFAULT_PROPERTIES, isoToMs, payload } from './contact.js';

/** HubSpot's cap on the results one search can page through. */
const SEARCH_CAP = 10000;

/**
 * One page of contacts from `state`.
 * @param {import('./api.js').Config} config
 * @param {string} stream
 * @param {string | undefined} state
 */
export function readPage(config, stream, state) {
  const cursor = Cursor.fromState(state);
  const from = cursor.queryValue();
  let filterGroups = [];
  if (from !== undefined) {
    const ms = isoToMs(from);
    if (ms === undefined) {
      throw new Internal(`the saved cursor \`${from}\` is not an ISO 8601 time`);
    }
    filterGroups = [{ filters: [{ propertyName: 'hs_lastmodifieddate', operator: 'GTE', value: String(ms) }] }];
  }
  const body = {
    filterGroups,
    sorts: ['hs_lastmodifieddate'],
    properties: [...(config.properties ?? DEFAULT_PROPERTIES), 'hs_lastmodifieddate'],
    limit: config.page_size,
    after: cursor.pageToken ?? '0',
  };
  const answer = request(config, 'post', `/crm/v3/objects/${stream}/search`).json(body).send().errorForStatus(`searching ${stream}`).json();

  const next = Cursor.fromJSONValue(cursor.toJSON());
  const records = [];
  for (const object of answer.results ?? []) {
    if (object.id === undefined || object.id === null) {
      throw new Internal('HubSpot returned a contact without id');
    }
    const id = String(object.id);
    const updated = object.updatedAt ?? '';
    if (cursor.isSeen(updated, id)) continue;
    next.observe(updated, id);
    records.push(upsert(stream, id, payload(object), updated));
  }
  const token = answer.paging?.next?.after;
  if (token !== undefined && Number(token) + config.page_size > SEARCH_CAP) {
    // Past HubSpot's cap the same query cannot go on: restart from the
    // newest value read (the ids read at it are remembered).
    next.setPage(undefined, from);
  } else {
    next.setPage(token === undefined ? undefined : String(token), from);
  }
  return { records, state: next.toState(), hasMore: token !== undefined };
}
