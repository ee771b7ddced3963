// UTF-8 text ↔ bytes: QuickJS has neither TextEncoder nor TextDecoder, and
// HTTP bodies and key-value values are `list<u8>` (a Uint8Array).

/**
 * Text as UTF-8 bytes (a lone surrogate becomes U+FFFD, as TextEncoder does).
 * @param {string} text
 * @returns {Uint8Array}
 */
export function encodeUtf8(text) {
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
 * UTF-8 bytes as text; each maximal invalid subsequence becomes U+FFFD,
 * exactly as `new TextDecoder()` does (the WHATWG Encoding decoder).
 * @param {Uint8Array | ArrayLike<number>} bytes
 * @returns {string}
 */
export function decodeUtf8(bytes) {
  /** @type {number[]} */
  const units = [];
  let text = '';
  let cp = 0;
  let needed = 0;
  let seen = 0;
  let lower = 0x80;
  let upper = 0xbf;
  /** @param {number} c */
  const emit = (c) => {
    if (c >= 0x10000) {
      const v = c - 0x10000;
      units.push(0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
    } else {
      units.push(c);
    }
    if (units.length >= 8192) {
      text += String.fromCharCode.apply(null, units);
      units.length = 0;
    }
  };
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (needed === 0) {
      if (b <= 0x7f) {
        emit(b);
      } else if (b >= 0xc2 && b <= 0xdf) {
        needed = 1;
        cp = b & 0x1f;
      } else if (b >= 0xe0 && b <= 0xef) {
        if (b === 0xe0) lower = 0xa0;
        if (b === 0xed) upper = 0x9f;
        needed = 2;
        cp = b & 0xf;
      } else if (b >= 0xf0 && b <= 0xf4) {
        if (b === 0xf0) lower = 0x90;
        if (b === 0xf4) upper = 0x8f;
        needed = 3;
        cp = b & 0x7;
      } else {
        emit(0xfffd);
      }
      continue;
    }
    if (b < lower || b > upper) {
      // The sequence ends before this byte, which is read again.
      cp = needed = seen = 0;
      lower = 0x80;
      upper = 0xbf;
      emit(0xfffd);
      i--;
      continue;
    }
    lower = 0x80;
    upper = 0xbf;
    cp = (cp << 6) | (b & 0x3f);
    seen++;
    if (seen === needed) {
      emit(cp);
      cp = needed = seen = 0;
    }
  }
  if (needed !== 0) {
    emit(0xfffd);
  }
  return text + String.fromCharCode.apply(null, units);
}
