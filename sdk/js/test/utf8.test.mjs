import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeUtf8, encodeUtf8 } from '../src/index.js';

const samples = ['', 'plain ascii', 'Zoë Ça fait 15 €', '日本語テキスト', 'emoji 👩‍💻 and 𝄞', '\u0000\u007f\u0080\u07ff\u0800\uffff', 'lone \ud800 surrogate'];

test('encoding matches TextEncoder, decoding matches TextDecoder', () => {
  for (const s of samples) {
    const bytes = new TextEncoder().encode(s);
    assert.deepEqual(encodeUtf8(s), bytes, JSON.stringify(s));
    assert.equal(decodeUtf8(bytes), new TextDecoder().decode(bytes), JSON.stringify(s));
  }
});

test('invalid bytes decode to U+FFFD as TextDecoder does', () => {
  const cases = [[0xff], [0xc3], [0xe2, 0x82], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0x61, 0xf0, 0x9f, 0x98, 0x62], [0xf4, 0x90, 0x80, 0x80]];
  for (const c of cases) {
    const bytes = Uint8Array.from(c);
    assert.equal(decodeUtf8(bytes), new TextDecoder().decode(bytes), JSON.stringify(c));
  }
});

test('long texts decode in chunks without overflowing the argument list', () => {
  const s = 'é'.repeat(100_000);
  assert.equal(decodeUtf8(encodeUtf8(s)), s);
});
