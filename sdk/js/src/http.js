// Outbound HTTP through the host (`nexo:connector/http`): a request
// builder, secret templates, the response with status classification, and
// the host's refusals as the SDK's error classes.

import { witSend } from './host-net.js';
import { AccessDenied, AuthError, Internal, NexoError, RateLimited, Rejected, Transient } from './errors.js';
import { decodeUtf8, encodeUtf8 } from './utf8.js';
import { fromU64 } from './u64.js';

/** Longest excerpt of a response body quoted in an error. */
export const ERROR_EXCERPT_CHARS = 160;

/**
 * The template the host replaces with the secret's value at send time, only
 * for origins the secret is bound to. The plugin never sees the value.
 * @param {string} name
 * @returns {string}
 */
export function secret(name) {
  return `{{secret:${name}}}`;
}

/** @typedef {'get' | 'head' | 'post' | 'put' | 'patch' | 'delete'} Method */

/** An HTTP request on its way; every setter returns the request. */
export class Request {
  /**
   * @param {Method} method
   * @param {string} url absolute URL
   */
  constructor(method, url) {
    /** @type {Method} */
    this.method = method;
    /** @type {string} */
    this.url = url;
    /** @type {[string, string][]} */
    this.headers = [];
    /** @type {[string, string][]} */
    this.queryPairs = [];
    /** @type {[string, string] | undefined} */
    this.basic = undefined;
    /** @type {Uint8Array | undefined} */
    this.bodyBytes = undefined;
    /** @type {number | undefined} */
    this.timeout = undefined;
  }

  /**
   * Adds a query parameter (percent-encoded; an empty value is left out).
   * @param {string} name
   * @param {string | number | boolean} value
   */
  query(name, value) {
    const v = String(value);
    if (v !== '') {
      this.queryPairs.push([name, v]);
    }
    return this;
  }

  /**
   * @param {string} name
   * @param {string} value may contain `{{secret:NAME}}`
   */
  header(name, value) {
    this.headers.push([name, value]);
    return this;
  }

  /**
   * `Authorization: Bearer {{secret:NAME}}`.
   * @param {string} name the secret
   */
  bearerSecret(name) {
    return this.header('Authorization', `Bearer ${secret(name)}`);
  }

  /**
   * Basic auth; both parts may be secret templates.
   * @param {string} user
   * @param {string} password
   */
  basicAuth(user, password) {
    this.basic = [user, password];
    return this;
  }

  /**
   * A JSON body, with its content type.
   * @param {unknown} value
   */
  json(value) {
    this.header('Content-Type', 'application/json');
    this.bodyBytes = encodeUtf8(JSON.stringify(value));
    return this;
  }

  /**
   * A raw body (text is sent as UTF-8).
   * @param {Uint8Array | string} body
   */
  body(body) {
    this.bodyBytes = typeof body === 'string' ? encodeUtf8(body) : body;
    return this;
  }

  /**
   * Per-request timeout (the host caps it with its own).
   * @param {number} ms
   */
  timeoutMs(ms) {
    this.timeout = ms;
    return this;
  }

  /** The URL with the query parameters. */
  fullUrl() {
    if (this.queryPairs.length === 0) {
      return this.url;
    }
    const q = this.queryPairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
    return `${this.url}${this.url.includes('?') ? '&' : '?'}${q}`;
  }

  /**
   * Sends it and waits for the answer, whatever its status. A request the
   * host refuses, or that gets no answer, throws the matching SDK error.
   * @returns {Response}
   */
  send() {
    const url = this.fullUrl();
    let answer;
    try {
      answer = witSend({
        method: this.method,
        url,
        headers: this.headers,
        basicAuth: this.basic,
        body: this.bodyBytes,
        timeoutMs: this.timeout,
      });
    } catch (e) {
      throw httpFailure(e, `${this.method.toUpperCase()} ${this.url}`);
    }
    // 1.1 hands a UTF-8 body over as text (`{tag: 'text'}`), anything
    // else as bytes.
    return new Response(answer.status, answer.headers, answer.body.val);
  }
}

/** Request builders per method. */
export const http = Object.freeze({
  /** @param {string} url */
  get: (url) => new Request('get', url),
  /** @param {string} url */
  head: (url) => new Request('head', url),
  /** @param {string} url */
  post: (url) => new Request('post', url),
  /** @param {string} url */
  put: (url) => new Request('put', url),
  /** @param {string} url */
  patch: (url) => new Request('patch', url),
  /** @param {string} url */
  delete: (url) => new Request('delete', url),
});

/**
 * What the host's `http-error` (thrown by the bindings as `{payload}`)
 * means for the plugin: a refusal is `access-denied`, a used-up budget is
 * `rate-limited`, a credential needing authorization is `auth`, no answer
 * is `transient`.
 * @param {unknown} e
 * @param {string} what the request, for the message
 * @returns {NexoError}
 */
export function httpFailure(e, what) {
  const p = /** @type {any} */ (e !== null && typeof e === 'object' && 'payload' in e ? /** @type {any} */ (e).payload : e);
  if (p === null || typeof p !== 'object' || typeof p.tag !== 'string') {
    return new Internal(`${what}: ${e instanceof Error ? e.message : String(e)}`);
  }
  switch (p.tag) {
    case 'origin-not-allowed':
    case 'address-not-allowed':
    case 'redirect-not-allowed':
    case 'secret-not-allowed':
      return new AccessDenied(String(p.val));
    case 'invalid-request':
      return new Internal(`${what}: invalid request: ${p.val}`);
    case 'response-too-large':
      return new Internal(`${what}: response larger than the host's ${fromU64(p.val)}-byte cap`);
    case 'timeout':
      return new Transient(`${what}: request timed out`);
    case 'connection-failed':
      return new Transient(`${what}: ${p.val}`);
    case 'budget-exhausted':
      return new RateLimited(fromU64(p.val), `${what}: the connection's request budget is used up; retry after ${fromU64(p.val)} ms`);
    case 'needs-authorization':
      return new AuthError(`${what}: ${p.val}`);
    default:
      return new Internal(`${what}: unknown HTTP error ${p.tag}`);
  }
}

/** An HTTP answer, whatever its status. */
export class Response {
  /** @type {string | undefined} */
  #text;
  /** @type {Uint8Array | undefined} */
  #bytes;

  /**
   * @param {number} status
   * @param {[string, string][]} headers
   * @param {Uint8Array | string} body the bytes, or their text when they
   *   are UTF-8 (as the host hands such a body over)
   */
  constructor(status, headers, body) {
    /** @type {number} */
    this.status = status;
    /** @type {[string, string][]} */
    this.headers = headers;
    if (typeof body === 'string') {
      this.#text = body;
    } else {
      this.#bytes = body;
    }
  }

  /** The body's bytes, as the system sent them. */
  get body() {
    if (this.#bytes === undefined) {
      this.#bytes = encodeUtf8(this.#text ?? '');
    }
    return this.#bytes;
  }

  /**
   * The first header of this name (case-insensitive).
   * @param {string} name
   * @returns {string | undefined}
   */
  header(name) {
    const n = name.toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === n);
    return found ? found[1] : undefined;
  }

  /** The body as text (bytes that are not UTF-8 with U+FFFD for each bad sequence). */
  text() {
    if (this.#text === undefined) {
      this.#text = decodeUtf8(this.#bytes ?? new Uint8Array());
    }
    return this.#text;
  }

  /**
   * The body as JSON; an answer that is not JSON is `internal`.
   * @returns {any}
   */
  json() {
    const text = this.text();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Internal(`HTTP ${this.status}: the answer is not JSON (${e instanceof Error ? e.message : e}): ${excerpt(text) ?? '(empty)'}`);
    }
  }

  /** `Retry-After` in milliseconds (seconds form only). */
  retryAfterMs() {
    const v = this.header('retry-after');
    if (v === undefined || !/^\s*\d+\s*$/.test(v)) {
      return undefined;
    }
    return Number(v.trim()) * 1000;
  }

  /**
   * This response when its status is 2xx; otherwise throws the error
   * {@link errorForStatus} gives.
   * @param {string} [what] what was asked, for the message
   * @returns {Response}
   */
  errorForStatus(what) {
    const e = errorForStatus(this, what);
    if (e) {
      throw e;
    }
    return this;
  }
}

/**
 * The SDK error a non-2xx status means, or `null` for 2xx: 401 → auth,
 * 403 → access-denied, 429 → rate-limited (Retry-After, else 1 s),
 * 408 and 5xx → transient, other 4xx → rejected, anything else →
 * internal. The message quotes the start of the body, credentials masked.
 * @param {Response} response
 * @param {string} [what]
 * @returns {NexoError | null}
 */
export function errorForStatus(response, what) {
  const s = response.status;
  if (s >= 200 && s < 300) {
    return null;
  }
  const quoted = excerpt(response.text());
  const msg = `${what ? `${what}: ` : ''}HTTP ${s}${quoted ? `: ${quoted}` : ' (empty body)'}`;
  if (s === 401) return new AuthError(msg);
  if (s === 403) return new AccessDenied(msg);
  if (s === 429) return new RateLimited(response.retryAfterMs() ?? 1000, msg);
  if (s === 408 || (s >= 500 && s <= 599)) return new Transient(msg);
  if (s >= 400 && s <= 499) return new Rejected(msg);
  return new Internal(msg);
}

const CREDENTIAL_KEYS = ['token', 'access_token', 'api_key', 'apikey', 'password', 'secret', 'authorization'];

/**
 * A short single line from a body for an error message: words joined by
 * one space, the word after `Bearer`/`Basic`/`token` and the value of
 * `password=…`-like pairs masked, cut at {@link ERROR_EXCERPT_CHARS}.
 * @param {string} text
 * @returns {string | undefined}
 */
export function excerpt(text) {
  const words = text.split(/[\s\u0000-\u001f\u007f]+/).filter((w) => w !== '');
  if (words.length === 0) {
    return undefined;
  }
  let out = '';
  let maskNext = false;
  for (const word of words) {
    if (out.length >= ERROR_EXCERPT_CHARS) {
      break;
    }
    if (out !== '') {
      out += ' ';
    }
    if (maskNext) {
      out += '***';
      maskNext = false;
      continue;
    }
    const bare = word.replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '').toLowerCase();
    if (bare === 'bearer' || bare === 'basic' || bare === 'token') {
      maskNext = true;
      out += word;
      continue;
    }
    out += maskPair(word);
  }
  return out.length > ERROR_EXCERPT_CHARS ? `${out.slice(0, ERROR_EXCERPT_CHARS)}…` : out;
}

/** @param {string} word */
function maskPair(word) {
  for (const sep of ['=', ':']) {
    const at = word.indexOf(sep);
    if (at >= 0) {
      const key = word.slice(0, at);
      const value = word.slice(at + 1);
      const k = key.replace(/^[^A-Za-z0-9_]+|[^A-Za-z0-9_]+$/g, '').toLowerCase();
      if (value !== '' && CREDENTIAL_KEYS.includes(k)) {
        return `${key}${sep}***`;
      }
    }
  }
  return word;
}
