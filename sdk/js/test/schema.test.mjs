import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidConfig, parseConfig, validate } from '../src/index.js';

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['base_url'],
  properties: {
    base_url: { type: 'string', pattern: '^https?://', minLength: 8 },
    page_size: { type: 'integer', minimum: 1, maximum: 100, default: 100 },
    mode: { enum: ['fast', 'safe'] },
    nested: { type: 'object', properties: { limit: { type: 'number', maximum: 5 } }, additionalProperties: { type: 'string' } },
  },
};

test('a valid config gets its defaults', () => {
  assert.deepEqual(parseConfig(schema, '{"base_url":"https://x.test"}'), { base_url: 'https://x.test', page_size: 100 });
  assert.deepEqual(validate(schema, { base_url: 'https://x.test', page_size: 5, mode: 'safe', nested: { limit: 2.5, other: 'x' } }), []);
});

test('every problem names its field path', () => {
  const errors = validate(schema, { page_size: 0, mode: 'slow', extra: 1, nested: { limit: 9, other: 3 } });
  assert.deepEqual(errors, [
    '$.base_url: is required',
    '$.page_size: must be at least 1',
    '$.mode: must be one of "fast", "safe"',
    '$.extra: is not a known field (known: base_url, page_size, mode, nested)',
    '$.nested.limit: must be at most 5',
    '$.nested.other: must be string, not integer',
  ]);
  assert.deepEqual(validate(schema, { base_url: 'ftp://x' }), ['$.base_url: must be at least 8 characters long', '$.base_url: must match ^https?://']);
  assert.deepEqual(validate(schema, []), ['$: must be object, not array']);
  assert.deepEqual(validate(schema, { base_url: 'https://x.test', page_size: 2.5 }), ['$.page_size: must be integer, not number']);
});

test('a bad config is invalid-config naming the fields', () => {
  assert.throws(() => parseConfig(schema, '{"page_size": 500}'), (e) => e instanceof InvalidConfig && e.message.includes('$.base_url: is required') && e.message.includes('$.page_size: must be at most 100'));
  assert.throws(() => parseConfig(schema, '{nope'), (e) => e instanceof InvalidConfig && /not JSON/.test(e.message));
  assert.deepEqual(parseConfig({ type: 'object' }, ''), {});
});
