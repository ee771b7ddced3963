import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { AccessDenied, Internal, AuthError, hostConsole, info, kv, requireSecret, isSet } from '../src/index.js';
import { host } from './fake/host.mjs';

beforeEach(() => host.reset());

test('kv stores text and JSON, lists keys by prefix', () => {
  kv.setText('a/1', 'Zoë');
  kv.setJson('a/2', { n: 1 });
  kv.setText('b', 'x');
  assert.equal(kv.getText('a/1'), 'Zoë');
  assert.deepEqual(kv.getJson('a/2'), { n: 1 });
  assert.equal(kv.getText('missing'), undefined);
  assert.deepEqual(kv.listKeys('a/'), ['a/1', 'a/2']);
  kv.delete('a/1');
  assert.deepEqual(kv.listKeys('a/'), ['a/2']);
});

test("kv failures are the SDK's errors", () => {
  host.kvQuota = 4;
  assert.throws(() => kv.setText('key', 'too long'), (e) => e instanceof Internal && /quota of 4 bytes/.test(e.message));
  host.kv = null;
  assert.throws(() => kv.get('k'), (e) => e instanceof AccessDenied && /no key-value storage/.test(e.message));
});

test('log and console reach the host log', () => {
  info('read', 3, 'rows', { a: 1 });
  hostConsole.warn('careful', new Error('x'));
  assert.deepEqual(host.logs, [['info', 'read 3 rows {"a":1}'], ['warn', 'careful Error: x']]);
});

test('secrets are known by name only', () => {
  host.secrets.add('api_token');
  assert.equal(isSet('api_token'), true);
  requireSecret('api_token');
  assert.throws(() => requireSecret('other'), (e) => e instanceof AuthError && /`other` is not set/.test(e.message));
});
