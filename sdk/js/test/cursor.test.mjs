import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cursor, Internal } from '../src/index.js';

test('ties on the cursor are neither skipped nor repeated', () => {
  const c = new Cursor();
  c.observe('2026-01-01T00:00:00Z', 'a');
  const back = Cursor.fromState(c.toState());
  assert.ok(back.isSeen('2026-01-01T00:00:00Z', 'a'));
  assert.ok(!back.isSeen('2026-01-01T00:00:00Z', 'b'));
  assert.ok(back.isSeen('2025-12-31T23:59:59Z', 'z'));
  assert.ok(!back.isSeen('2026-01-01T00:00:01Z', 'a'));
  back.observe('2026-01-01T00:00:00Z', 'b');
  back.observe('2026-01-02T00:00:00Z', 'c');
  assert.equal(back.value, '2026-01-02T00:00:00Z');
  assert.deepEqual(back.idsAtValue, ['c']);
});

test('a paged query keeps its starting value until it ends', () => {
  const c = new Cursor();
  c.observe('5', 'a');
  const from = c.queryValue();
  c.observe('7', 'b');
  c.setPage('100', from);
  assert.equal(c.queryValue(), '5');
  c.setPage(undefined, from);
  assert.equal(c.queryValue(), '7');
});

test("the state is the Rust SDK's JSON form", () => {
  const c = new Cursor();
  c.observe('v', 'a');
  c.setPage('tok', undefined);
  assert.equal(c.toState(), '{"value":"v","ids_at_value":["a"],"page_token":"tok"}');
  const rust = Cursor.fromState('{"value":"2026","ids_at_value":["1","2"],"page_token":"200","paging_from":"2025"}');
  assert.equal(rust.queryValue(), '2025');
  assert.ok(rust.isSeen('2026', '2'));
  assert.equal(Cursor.fromState(undefined).value, undefined);
  assert.throws(() => Cursor.fromState('{"value":3}'), Internal);
  assert.throws(() => Cursor.fromState('nope'), Internal);
});
