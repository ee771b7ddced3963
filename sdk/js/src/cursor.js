// Incremental read position, kept in a page's `state` and committed by the
// host with the page's data: the highest cursor value seen, the ids seen
// *at* that value (so records sharing a timestamp are neither skipped nor
// read twice), and the system's own page token while a paged query runs.
// The JSON form is the Rust SDK's `Cursor`, so either SDK can resume the
// other's state.

import { Internal } from './errors.js';

export class Cursor {
  constructor() {
    /** @type {string | undefined} highest cursor value returned */
    this.value = undefined;
    /** @type {string[]} ids returned at `value` */
    this.idsAtValue = [];
    /** @type {string | undefined} the system's token for the next page */
    this.pageToken = undefined;
    /** @type {string | undefined} the value the paged query started from */
    this.pagingFrom = undefined;
  }

  /**
   * The cursor saved in `state` (none or empty: from the start).
   * @param {string | undefined | null} state
   * @returns {Cursor}
   */
  static fromState(state) {
    const c = new Cursor();
    if (state === undefined || state === null || state === '') {
      return c;
    }
    let v;
    try {
      v = JSON.parse(state);
    } catch (e) {
      throw new Internal(`the saved read state is not a nexo-sdk cursor: ${e instanceof Error ? e.message : e}`);
    }
    return Cursor.fromJSONValue(v);
  }

  /**
   * A cursor from its parsed JSON form (e.g. a field of a larger state).
   * @param {any} v
   * @returns {Cursor}
   */
  static fromJSONValue(v) {
    const c = new Cursor();
    if (v === undefined || v === null) {
      return c;
    }
    const ok =
      typeof v === 'object' &&
      !Array.isArray(v) &&
      (v.value === undefined || typeof v.value === 'string') &&
      (v.ids_at_value === undefined || (Array.isArray(v.ids_at_value) && v.ids_at_value.every((/** @type {unknown} */ i) => typeof i === 'string'))) &&
      (v.page_token === undefined || typeof v.page_token === 'string') &&
      (v.paging_from === undefined || typeof v.paging_from === 'string');
    if (!ok) {
      throw new Internal(`the saved read state is not a nexo-sdk cursor: ${JSON.stringify(v)}`);
    }
    c.value = v.value;
    c.idsAtValue = v.ids_at_value ?? [];
    c.pageToken = v.page_token;
    c.pagingFrom = v.paging_from;
    return c;
  }

  /** The JSON form (the Rust SDK's field names; empty fields left out). */
  toJSON() {
    /** @type {Record<string, unknown>} */
    const o = {};
    if (this.value !== undefined) o.value = this.value;
    if (this.idsAtValue.length > 0) o.ids_at_value = this.idsAtValue;
    if (this.pageToken !== undefined) o.page_token = this.pageToken;
    if (this.pagingFrom !== undefined) o.paging_from = this.pagingFrom;
    return o;
  }

  /** The state text for a page. */
  toState() {
    return JSON.stringify(this);
  }

  /**
   * The value to query from ("modified since"): while paging, the value the
   * paged query started from; otherwise the committed value.
   * @returns {string | undefined}
   */
  queryValue() {
    return this.pageToken !== undefined ? this.pagingFrom : this.value;
  }

  /**
   * After a page fetched with `queriedFrom` (what queryValue() returned):
   * a token continues the same query on the next read; none ends it, so the
   * next read queries from the new value.
   * @param {string | undefined} token
   * @param {string | undefined} queriedFrom
   */
  setPage(token, queriedFrom) {
    this.pagingFrom = token !== undefined ? queriedFrom : undefined;
    this.pageToken = token;
  }

  /**
   * Whether a record with this cursor value and id was already returned.
   * Values compare as strings: use sortable forms (ISO 8601 UTC).
   * @param {string} value
   * @param {string} id
   */
  isSeen(value, id) {
    if (this.value === undefined) return false;
    if (value < this.value) return true;
    if (value === this.value) return this.idsAtValue.includes(id);
    return false;
  }

  /**
   * Notes that a record with this value and id was returned.
   * @param {string} value
   * @param {string} id
   */
  observe(value, id) {
    if (this.value !== undefined && value < this.value) {
      return;
    }
    if (this.value !== undefined && value === this.value) {
      if (!this.idsAtValue.includes(id)) {
        this.idsAtValue.push(id);
      }
      return;
    }
    this.value = value;
    this.idsAtValue = [id];
  }
}
