// What a HubSpot contact is as a record payload, and back: the flat
// payload read gives, and the properties a write sends.

import { Rejected } from 'nexo-sdk';

/** The custom property holding a create's idempotency key. */
export const KEY_PROPERTY = 'nexo_idempotency_key';

/** Properties HubSpot maintains itself: never written, left out of payloads. */
export const MANAGED = ['hs_object_id', 'createdate', 'lastmodifieddate', 'hs_lastmodifieddate', 'hs_createdate', 'hs_updated_by_user_id', KEY_PROPERTY];

/** Payload fields that are not properties. */
const ENVELOPE = ['id', 'updatedAt', 'createdAt', 'archived', 'archivedAt', 'associations', 'associate'];

/** Properties read when the config names none. */
export const DEFAULT_PROPERTIES = ['firstname', 'lastname', 'email', 'phone', 'company', 'city', 'country', 'lifecyclestage'];

/** {@link MANAGED} as a set, for the per-property test of a read. */
const MANAGED_SET = new Set(MANAGED);

/**
 * A search result as the flat payload, keys sorted (as the Rust connector
 * writes it, so both compare equal).
 * @param {{id: string, updatedAt?: string, properties?: Record<string, unknown>}} object
 * @returns {Record<string, unknown>}
 */
export function payload(object) {
  const properties = object.properties ?? {};
  const keys = ['id', 'updatedAt'];
  for (const k of Object.keys(properties)) {
    const v = properties[k];
    if (v !== null && v !== undefined && k !== 'id' && k !== 'updatedAt' && !MANAGED_SET.has(k)) {
      keys.push(k);
    }
  }
  keys.sort();
  /** @type {Record<string, unknown>} */
  const sorted = {};
  for (const k of keys) {
    sorted[k] = k === 'id' ? String(object.id) : k === 'updatedAt' ? (object.updatedAt ?? '') : properties[k];
  }
  return sorted;
}

/**
 * A record's payload as HubSpot properties: top-level fields (and those of
 * a nested `properties` object) as strings, `null` clearing; anything else
 * rejects this record.
 * @param {{stream: string, id: string}} record
 * @param {Record<string, any>} data
 * @returns {Record<string, string>}
 */
export function properties(record, data) {
  const nested = data.properties !== null && typeof data.properties === 'object' && !Array.isArray(data.properties) ? data.properties : {};
  /** @type {Record<string, string>} */
  const out = {};
  const entries = Object.entries(data).filter(([k]) => k !== 'properties').concat(Object.entries(nested));
  for (const [name, value] of entries) {
    if (ENVELOPE.includes(name) || MANAGED.includes(name)) continue;
    if (value === null) {
      out[name] = '';
    } else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      out[name] = String(value);
    } else {
      throw new Rejected(`record ${record.stream}/${record.id}: field \`${name}\` is ${JSON.stringify(value)}, not a HubSpot property value (text, number, boolean)`);
    }
  }
  return out;
}

/**
 * `2026-01-05T10:00:00.123Z` (or without fraction) → milliseconds since the
 * epoch; undefined for anything else.
 * @param {string} s
 * @returns {number | undefined}
 */
export function isoToMs(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?Z$/.exec(s);
  if (!m) return undefined;
  const ms = Number((m[7] ?? '0').padEnd(3, '0').slice(0, 3));
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), ms);
}
