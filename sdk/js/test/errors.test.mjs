import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessDenied, AuthError, Internal, InvalidConfig, RateLimited, Rejected, Transient, toWitError } from '../src/index.js';

test('each error class is its WIT case', () => {
  assert.deepEqual(new InvalidConfig('x').toWit(), { tag: 'invalid-config', val: 'x' });
  assert.deepEqual(new AuthError('x').toWit(), { tag: 'auth', val: 'x' });
  assert.deepEqual(new AccessDenied('x').toWit(), { tag: 'access-denied', val: 'x' });
  assert.deepEqual(new RateLimited(2500).toWit(), { tag: 'rate-limited', val: 2500 });
  assert.deepEqual(new Transient('x').toWit(), { tag: 'transient', val: 'x' });
  assert.deepEqual(new Rejected('x').toWit(), { tag: 'rejected', val: 'x' });
  assert.deepEqual(new Internal('x').toWit(), { tag: 'internal', val: 'x' });
});

test('anything else thrown is internal with its message', () => {
  assert.deepEqual(toWitError(new TypeError('x is undefined')), { tag: 'internal', val: 'TypeError: x is undefined' });
  assert.deepEqual(toWitError('boom'), { tag: 'internal', val: 'uncaught string: boom' });
  assert.deepEqual(toWitError({ tag: 'transient', val: 'raw' }), { tag: 'transient', val: 'raw' });
  assert.deepEqual(toWitError({ tag: 'no-such-case', val: 1 }).tag, 'internal');
});

test('u64 becomes a BigInt only for a backend that asks for it', () => {
  globalThis.__nexoU64BigInt = true;
  try {
    assert.deepEqual(new RateLimited(7000).toWit(), { tag: 'rate-limited', val: 7000n });
  } finally {
    delete globalThis.__nexoU64BigInt;
  }
});
