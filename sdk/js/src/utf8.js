// UTF-8 text ↔ bytes: QuickJS has neither TextEncoder nor TextDecoder, and
// HTTP bodies and key-value values are `list<u8>` (a Uint8Array).

/** Code units handed to one `String.fromCharCode.apply` (the argument list's size). */
const CHUNK = 8192;

/** Any character outside ASCII. */
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Text as UTF-8 bytes (a lone surrogate becomes U+FFFD, as TextEncoder does).
 * ASCII text is copied unit by unit into a preallocated array.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function encodeUtf8(text) {
  if (!NON_ASCII.test(text)) {
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      out[i] = text.charCodeAt(i);
    }
    return out;
  }
  const out = [];
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      c = 0xfffd;
    }
    if (c < 0x80) {
      out.push(c);
    } else if (c < 0x800) {
      out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    } else {
      out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    }
  }
  return Uint8Array.from(out);
}

/**
 * One UTF-8 sequence in a byte string (one character per byte): a complete
 * well-formed sequence, else a maximal subpart of one (a lead byte and the
 * continuation bytes that could still have completed it), else any single
 * byte outside ASCII. Alternatives are tried in this order, so a complete
 * sequence always wins over its prefix, as the WHATWG decoder reads.
 */
const SEQUENCE = new RegExp(
  [
    '[\\xc2-\\xdf][\\x80-\\xbf]',
    '\\xe0[\\xa0-\\xbf][\\x80-\\xbf]',
    '[\\xe1-\\xec\\xee\\xef][\\x80-\\xbf]{2}',
    '\\xed[\\x80-\\x9f][\\x80-\\xbf]',
    '\\xf0[\\x90-\\xbf][\\x80-\\xbf]{2}',
    '[\\xf1-\\xf3][\\x80-\\xbf]{3}',
    '\\xf4[\\x80-\\x8f][\\x80-\\xbf]{2}',
    '\\xe0[\\xa0-\\xbf]',
    '[\\xe1-\\xec\\xee\\xef][\\x80-\\xbf]',
    '\\xed[\\x80-\\x9f]',
    '\\xf0[\\x90-\\xbf][\\x80-\\xbf]?',
    '[\\xf1-\\xf3][\\x80-\\xbf]{1,2}',
    '\\xf4[\\x80-\\x8f][\\x80-\\xbf]?',
    '[\\x80-\\xff]',
  ].join('|'),
  'g',
);

/** A run of bytes outside ASCII (no sequence spans an ASCII byte). */
const HIGH_RUN = /[\x80-\xff]+/g;

/**
 * The character a sequence matched by {@link SEQUENCE} stands for: U+FFFD
 * unless it is complete.
 * @param {string} seq
 * @returns {string}
 */
function character(seq) {
  const lead = seq.charCodeAt(0);
  const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc2 ? 2 : 0;
  if (seq.length !== length) {
    return '\ufffd';
  }
  let cp = lead & (0xff >> (length + 1));
  for (let i = 1; i < length; i++) {
    cp = (cp << 6) | (seq.charCodeAt(i) & 0x3f);
  }
  return String.fromCodePoint(cp);
}

/**
 * UTF-8 bytes as text; each maximal invalid subsequence becomes U+FFFD,
 * exactly as `new TextDecoder()` does (the WHATWG Encoding decoder).
 *
 * The bytes become a byte string in chunks and only its runs of bytes
 * outside ASCII are decoded, all in native code: a per-byte loop in the
 * interpreter (≈ 100 ns a byte in QuickJS) took most of a JSON page's read
 * time.
 * @param {Uint8Array | ArrayLike<number>} bytes
 * @returns {string}
 */
export function decodeUtf8(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += CHUNK) {
    const end = Math.min(i + CHUNK, bytes.length);
    const part =
      bytes instanceof Uint8Array ? bytes.subarray(i, end) : Array.prototype.slice.call(bytes, i, end);
    binary += String.fromCharCode.apply(null, /** @type {number[]} */ (/** @type {unknown} */ (part)));
  }
  return binary.replace(HIGH_RUN, decodeRun);
}

/**
 * A run of bytes outside ASCII as text. Native: `escape` turns each byte
 * into %XX, which `decodeURIComponent` reads back as UTF-8 — and throws on
 * malformed UTF-8, which {@link SEQUENCE} then decodes sequence by sequence
 * as the WHATWG decoder does.
 * @param {string} run
 * @returns {string}
 */
function decodeRun(run) {
  try {
    return decodeURIComponent(escape(run));
  } catch {
    return run.replace(SEQUENCE, character);
  }
}
