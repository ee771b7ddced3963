import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { AccessDenied, AuthError, Internal, RateLimited, Rejected, Response, Transient, encodeUtf8, errorForStatus, excerpt, http, secret } from '../src/index.js';
import { host, witErr } from './fake/host.mjs';

beforeEach(() => host.reset());

const answer = (status, body = '', headers = []) => new Response(status, headers, encodeUtf8(body));

test('statuses are classified', () => {
  assert.equal(errorForStatus(answer(204)), null);
  assert.ok(errorForStatus(answer(401, 'no')) instanceof AuthError);
  assert.ok(errorForStatus(answer(403, 'no')) instanceof AccessDenied);
  const limited = errorForStatus(answer(429, '', [['Retry-After', '7']]));
  assert.ok(limited instanceof RateLimited);
  assert.equal(limited.retryAfterMs, 7000);
  assert.equal(errorForStatus(answer(429)).retryAfterMs, 1000);
  assert.ok(errorForStatus(answer(503)) instanceof Transient);
  assert.ok(errorForStatus(answer(408)) instanceof Transient);
  assert.ok(errorForStatus(answer(422, 'bad email')) instanceof Rejected);
  assert.ok(errorForStatus(answer(404)) instanceof Rejected);
  assert.ok(errorForStatus(answer(302)) instanceof Internal);
  assert.equal(errorForStatus(answer(400, 'bad'), 'creating contacts').message, 'creating contacts: HTTP 400: bad');
  assert.throws(() => answer(500).errorForStatus('x'), Transient);
});

test('error excerpts are one short line with credentials masked', () => {
  assert.equal(excerpt('bad credentials\r\nyou sent: Bearer abc123XYZ and token=q9q9q9'), 'bad credentials you sent: Bearer *** and token=***');
  assert.equal(excerpt(''), undefined);
  const long = excerpt('x '.repeat(1000));
  assert.ok(long.length <= 161 && long.endsWith('…'), long);
});

test('a request reaches the host with secret templates, query and JSON body', () => {
  host.handler = () => ({ status: 200, headers: [['Content-Type', 'application/json']], body: { tag: 'text', val: '{"ok":true,"name":"Zoë"}' } });
  const r = http.post('https://api.example.test/a?x=1').bearerSecret('api_token').query('after', '2026-01-01T00:00:00+01:00').query('empty', '').json({ n: 'é' }).timeoutMs(500).send();
  assert.deepEqual(r.json(), { ok: true, name: 'Zoë' });
  assert.equal(r.header('content-type'), 'application/json');
  const sent = host.requests[0];
  assert.equal(sent.method, 'post');
  assert.equal(sent.url, 'https://api.example.test/a?x=1&after=2026-01-01T00%3A00%3A00%2B01%3A00');
  assert.deepEqual(sent.headers, [['Authorization', 'Bearer {{secret:api_token}}'], ['Content-Type', 'application/json']]);
  assert.equal(new TextDecoder().decode(sent.body), '{"n":"é"}');
  assert.equal(sent.timeoutMs, 500);
  assert.equal(sent.basicAuth, undefined);
  assert.equal(secret('x'), '{{secret:x}}');
});

test('a body is the text the host hands over for UTF-8, else the bytes; each gives the other on demand', () => {
  host.handler = () => ({ status: 200, headers: [], body: { tag: 'text', val: 'Zoë €' } });
  const text = http.get('https://api.example.test/t').send();
  assert.equal(text.text(), 'Zoë €');
  assert.deepEqual(text.body, new TextEncoder().encode('Zoë €'));
  const latin1 = Uint8Array.from([0x5a, 0x6f, 0xeb]);
  host.handler = () => ({ status: 200, headers: [], body: { tag: 'bytes', val: latin1 } });
  const bytes = http.get('https://api.example.test/b').send();
  assert.deepEqual(bytes.body, latin1);
  assert.equal(bytes.text(), 'Zo\ufffd');
  assert.equal(new Response(200, [], '').text(), '');
  assert.deepEqual(new Response(200, [], '{}').json(), {});
});

test("the host's refusals become the SDK's errors", () => {
  const cases = [
    [{ tag: 'origin-not-allowed', val: 'origin http://a is not declared' }, AccessDenied, 'origin http://a is not declared'],
    [{ tag: 'address-not-allowed', val: 'loopback' }, AccessDenied, 'loopback'],
    [{ tag: 'redirect-not-allowed', val: 'to http://b' }, AccessDenied, 'to http://b'],
    [{ tag: 'secret-not-allowed', val: 'secret x is not bound to http://a' }, AccessDenied, 'secret x is not bound to http://a'],
    [{ tag: 'budget-exhausted', val: 1500 }, RateLimited, /request budget/],
    [{ tag: 'needs-authorization', val: 'api_token' }, AuthError, /api_token/],
    [{ tag: 'timeout' }, Transient, /timed out/],
    [{ tag: 'connection-failed', val: 'refused' }, Transient, /refused/],
    [{ tag: 'response-too-large', val: 1024 }, Internal, /1024-byte cap/],
    [{ tag: 'invalid-request', val: 'bad url' }, Internal, /bad url/],
  ];
  for (const [payload, cls, msg] of cases) {
    host.handler = () => witErr(payload);
    let caught;
    try {
      http.get('https://api.example.test/x').send();
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof cls, `${payload.tag} → ${caught}`);
    if (typeof msg === 'string') assert.equal(caught.message, msg);
    else assert.match(caught.message, msg);
    if (payload.tag === 'budget-exhausted') assert.equal(caught.retryAfterMs, 1500);
  }
});

test('an answer that is not JSON says so', () => {
  assert.throws(() => answer(200, '<html>').json(), (e) => e instanceof Internal && /not JSON/.test(e.message));
});
