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

test('random bytes decode exactly as TextDecoder decodes them', () => {
  // A small deterministic generator, so a failure names a reproducible case.
  let seed = 0x2545f491;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  // Bytes drawn mostly from around the boundaries the decoder checks.
  const interesting = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff];
  for (let round = 0; round < 20_000; round++) {
    const bytes = new Uint8Array(next() % 12);
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = next() % 3 === 0 ? next() % 256 : interesting[next() % interesting.length];
    }
    assert.equal(decodeUtf8(bytes), new TextDecoder().decode(bytes), `bytes ${Array.from(bytes)}`);
    assert.equal(decodeUtf8(Array.from(bytes)), new TextDecoder().decode(bytes), `array ${Array.from(bytes)}`);
  }
});

test('a long mostly-ASCII body with a sequence across every chunk boundary decodes whole', () => {
  const s = ('{"name":"Zoë","city":"Zürich","note":"€ 𝄞"},'.repeat(2000));
  const bytes = new TextEncoder().encode(s);
  assert.ok(bytes.length > 3 * 8192);
  assert.equal(decodeUtf8(bytes), s);
  assert.deepEqual(encodeUtf8(s), bytes);
  const ascii = 'a'.repeat(20_000);
  assert.deepEqual(encodeUtf8(ascii), new TextEncoder().encode(ascii));
});
