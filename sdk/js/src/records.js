// Records as the contract carries them (`record`, `write-record`) and the
// outcomes of a write, built from plain objects: payloads may be given as
// objects and are sent as JSON text.

import { Rejected } from './errors.js';
import { toWitError } from './errors.js';

/**
 * @typedef {{stream: string, id: string, operation: 'upsert' | 'delete', payload: string, cursor: string | undefined}} WitRecord
 * @typedef {{stream: string, id: string, operation: 'upsert' | 'delete', payload: string, idempotencyKey: string}} WitWriteRecord
 */

/**
 * @param {unknown} payload
 * @returns {string}
 */
function payloadText(payload) {
  return typeof payload === 'string' ? payload : JSON.stringify(payload ?? {});
}

/**
 * An upsert record.
 * @param {string} stream
 * @param {string} id
 * @param {unknown} payload an object (sent as JSON) or JSON text
 * @param {string} [cursor] the record's cursor value
 * @returns {WitRecord}
 */
export function upsert(stream, id, payload, cursor) {
  return { stream, id: String(id), operation: 'upsert', payload: payloadText(payload), cursor };
}

/**
 * A delete record.
 * @param {string} stream
 * @param {string} id
 * @param {string} [cursor]
 * @returns {WitRecord}
 */
export function remove(stream, id, cursor) {
  return { stream, id: String(id), operation: 'delete', payload: '{}', cursor };
}

/**
 * A record's payload parsed; a payload that is not a JSON object is
 * `rejected` (this record only).
 * @param {{stream: string, id: string, payload: string}} record
 * @returns {Record<string, any>}
 */
export function payloadOf(record) {
  let v;
  try {
    v = JSON.parse(record.payload);
  } catch (e) {
    throw new Rejected(`record ${record.stream}/${record.id}: the payload is not JSON (${e instanceof Error ? e.message : e})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new Rejected(`record ${record.stream}/${record.id}: the payload is not a JSON object`);
  }
  return v;
}

/**
 * Any record-like object as the contract's `record` (payload as text,
 * operation `upsert` unless given), with fields missing taken from `from`.
 * @param {any} r
 * @param {Partial<WitRecord>} [from]
 * @returns {WitRecord}
 */
export function toWitRecord(r, from = {}) {
  return {
    stream: String(r.stream ?? from.stream ?? ''),
    id: String(r.id ?? from.id ?? ''),
    operation: r.operation ?? from.operation ?? 'upsert',
    payload: payloadText(r.payload),
    cursor: (r.cursor ?? from.cursor) === undefined || (r.cursor ?? from.cursor) === null ? undefined : String(r.cursor ?? from.cursor),
  };
}

/** The outcomes of one write record. */
export const outcome = Object.freeze({
  /** @param {string} id the new destination id */
  created: (id) => ({ tag: 'created', val: String(id) }),
  /** @param {string} id */
  updated: (id) => ({ tag: 'updated', val: String(id) }),
  /** @param {string} id */
  unchanged: (id) => ({ tag: 'unchanged', val: String(id) }),
  /** @param {string} id */
  deleted: (id) => ({ tag: 'deleted', val: String(id) }),
  /**
   * This record only failed; any thrown value is classified as
   * operations are (an SDK error keeps its case, anything else: internal).
   * @param {unknown} error
   */
  failed: (error) => ({ tag: 'failed', val: toWitError(error) }),
});
