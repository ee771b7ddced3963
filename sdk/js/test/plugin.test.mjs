import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { AuthError, Rejected, InvalidConfig, Transient, connector, mapper, outcome, upsert, SDK_NAME } from '../src/index.js';
import { host } from './fake/host.mjs';

beforeEach(() => host.reset());

/** What the bindings see a call throw: the WIT error value. */
function thrown(fn) {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail('the call did not throw');
}

const ops = connector({
  configSchema: { type: 'object', properties: { page_size: { type: 'integer', minimum: 1, default: 10 } }, additionalProperties: false },
  streams: [{ name: 'contacts', cursorField: 'updatedAt', canWrite: true }],
  capabilities: { httpOrigins: ['https://api.example.test'], secrets: [{ name: 'token', description: 'API token', origins: ['https://api.example.test'] }] },
  check(config) {
    if (config.page_size === 7) throw new AuthError('token refused');
    if (config.page_size === 8) throw new TypeError('oops');
    if (config.page_size === 9) throw 'a string';
  },
  read(config, stream, state) {
    return { records: [upsert(stream, '1', { n: config.page_size }, 'c1'), { id: 2, payload: '{"m":1}' }], state: { after: state ?? 'start' }, hasMore: true };
  },
  write(config, stream, batch) {
    return batch.map((r) => (r.id === '' ? outcome.created(`new-${r.idempotencyKey}`) : r.id === 'bad' ? outcome.failed(new Rejected('no email')) : { id: r.id, outcome: outcome.updated(r.id) }));
  },
});

test('spec describes the connector with the contract shapes', () => {
  const spec = ops.spec();
  assert.equal(spec.sdkVersion, SDK_NAME);
  assert.deepEqual(spec.streams, ['contacts']);
  assert.deepEqual(spec.capabilities, { httpOrigins: ['https://api.example.test'], secrets: [{ name: 'token', description: 'API token', origins: ['https://api.example.test'] }], kvBytes: 0 });
  assert.deepEqual(JSON.parse(spec.configSchema).properties.page_size.default, 10);
  assert.deepEqual(ops.discover('{}'), [{ name: 'contacts', jsonSchema: '{"type":"object"}', primaryKey: ['id'], cursorField: 'updatedAt', canRead: true, canWrite: true }]);
});

test('a thrown SDK error ends the call with its case; anything else is internal', () => {
  ops.check('{}');
  assert.deepEqual(thrown(() => ops.check('{"page_size":7}')), { tag: 'auth', val: 'token refused' });
  assert.deepEqual(thrown(() => ops.check('{"page_size":8}')), { tag: 'internal', val: 'TypeError: oops' });
  assert.deepEqual(thrown(() => ops.check('{"page_size":9}')), { tag: 'internal', val: 'uncaught string: a string' });
  const bad = thrown(() => ops.check('{"page_size":0,"x":1}'));
  assert.equal(bad.tag, 'invalid-config');
  assert.match(bad.val, /\$\.page_size: must be at least 1; \$\.x: is not a known field/);
  assert.deepEqual(thrown(() => ops.read('{}', 'deals', undefined)).tag, 'invalid-config');
});

test('read pages carry records with text payloads and the state as text', () => {
  const page = ops.read('{}', 'contacts', undefined);
  assert.deepEqual(page, {
    records: [
      { stream: 'contacts', id: '1', operation: 'upsert', payload: '{"n":10}', cursor: 'c1' },
      { stream: 'contacts', id: '2', operation: 'upsert', payload: '{"m":1}', cursor: undefined },
    ],
    state: '{"after":"start"}',
    hasMore: true,
  });
  assert.equal(ops.read('{}', 'contacts', 's1').state, '{"after":"s1"}');
});

test('write answers one result per record with the destination ids', () => {
  const batch = [
    { stream: 'contacts', id: '', operation: 'upsert', payload: '{}', idempotencyKey: 'k1' },
    { stream: 'contacts', id: 'bad', operation: 'upsert', payload: '{}', idempotencyKey: 'k2' },
    { stream: 'contacts', id: '5', operation: 'upsert', payload: '{}', idempotencyKey: 'k3' },
  ];
  assert.deepEqual(ops.write('{}', 'contacts', batch), [
    { id: 'new-k1', outcome: { tag: 'created', val: 'new-k1' } },
    { id: 'bad', outcome: { tag: 'failed', val: { tag: 'rejected', val: 'no email' } } },
    { id: '5', outcome: { tag: 'updated', val: '5' } },
  ]);
  const short = connector({ streams: ['s'], read: () => ({ records: [] }), write: () => [] });
  assert.equal(thrown(() => short.write('{}', 's', batch)).tag, 'internal');
  const readOnly = connector({ streams: ['s'], read: () => ({ records: [] }) });
  assert.equal(thrown(() => readOnly.write('{}', 's', batch)).tag, 'invalid-config');
});

test('a mapper answers one outcome per input; one bad record fails alone', () => {
  const m = mapper({
    configSchema: { type: 'object', properties: { upper: { type: 'boolean', default: true } } },
    map(record, config) {
      if (record.data.skip) return null;
      if (record.data.reject) throw new Rejected('no name');
      if (record.data.bug) return record.data.missing.field;
      if (record.data.down) throw new Transient('down');
      if (record.data.two) return [{ id: 'a', payload: {} }, { id: 'b', stream: 'other', payload: {} }];
      return { payload: { name: config.upper ? record.data.name.toUpperCase() : record.data.name } };
    },
  });
  const input = (id, data) => ({ stream: 'contacts', id, operation: 'upsert', payload: JSON.stringify(data), cursor: `c${id}` });
  const out = m.map('{}', [input('1', { name: 'ada' }), input('2', { skip: true }), input('3', { reject: true }), input('4', { bug: true }), input('5', { two: true }), { ...input('6', {}), payload: 'nope' }]);
  assert.deepEqual(out[0], { tag: 'mapped', val: [{ stream: 'contacts', id: '1', operation: 'upsert', payload: '{"name":"ADA"}', cursor: 'c1' }] });
  assert.deepEqual(out[1], { tag: 'mapped', val: [] });
  assert.deepEqual(out[2], { tag: 'failed', val: { tag: 'rejected', val: 'no name' } });
  assert.equal(out[3].tag, 'failed');
  assert.equal(out[3].val.tag, 'internal');
  assert.match(out[3].val.val, /TypeError/);
  assert.deepEqual(out[4].val.map((r) => [r.stream, r.id]), [['contacts', 'a'], ['other', 'b']]);
  assert.equal(out[5].val.tag, 'rejected');
  assert.deepEqual(thrown(() => m.map('{}', [input('7', { down: true })])), { tag: 'transient', val: 'down' });
  assert.equal(thrown(() => m.map('{"upper":"yes"}', [])).tag, 'invalid-config');
});
