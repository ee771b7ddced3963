// Types of nexo-sdk's public API (src/index.js). The contract's own types
// are in ../types/wit.d.ts.

import type * as Wit from '../types/wit.js';

export type { Wit };

export const SDK_VERSION: string;
export const WIT_VERSION: string;
export const SDK_NAME: string;

// errors

export class NexoError extends Error {
  constructor(tag: Wit.Error['tag'], message: string);
  readonly tag: Wit.Error['tag'];
  toWit(): Wit.Error;
}
export class InvalidConfig extends NexoError { constructor(message: string); }
export class AuthError extends NexoError { constructor(message: string); }
export class AccessDenied extends NexoError { constructor(message: string); }
export class RateLimited extends NexoError {
  constructor(retryAfterMs: number, message?: string);
  readonly retryAfterMs: number;
}
export class Transient extends NexoError { constructor(message: string); }
export class Rejected extends NexoError { constructor(message: string); }
export class Internal extends NexoError { constructor(message: string); }
export function toWitError(e: unknown): Wit.Error;

// plugins

/** A record a plugin returns: payload as an object or JSON text. */
export interface RecordOut {
  stream?: string;
  id: string;
  operation?: Wit.Operation;
  payload: unknown;
  cursor?: string;
}

export interface StreamDeclaration {
  name: string;
  jsonSchema?: object | string;
  primaryKey?: string[];
  cursorField?: string;
  canRead?: boolean;
  canWrite?: boolean;
}

export interface PageOut {
  records: RecordOut[];
  /** Text, or any JSON value (sent as JSON text). */
  state?: unknown;
  hasMore?: boolean;
}

export interface ConnectorDefinition<Config> {
  /** JSON Schema of the config; checked before every operation. */
  configSchema?: object | string;
  streams?: (string | StreamDeclaration)[];
  capabilities?: {
    httpOrigins?: string[];
    secrets?: { name: string; description?: string; origins?: string[] }[];
    kvBytes?: number;
  };
  check?(config: Config): void;
  discover?(config: Config): (string | StreamDeclaration)[];
  read(config: Config, stream: string, state: string | undefined): PageOut;
  /** One result per record, in batch order: an outcome or `{id, outcome}`. */
  write?(config: Config, stream: string, batch: Wit.WriteRecord[]): (Wit.WriteOutcome | Wit.WriteResult)[];
}

export function connector<Config = any>(def: ConnectorDefinition<Config>): Wit.Operations;

export interface MapInput extends Wit.Record {
  /** The payload parsed. */
  data: { [field: string]: any };
}

export interface MapperDefinition<Config> {
  configSchema?: object | string;
  /** What one record becomes: a record, a list (empty: skipped) or null (skipped). */
  map(record: MapInput, config: Config): RecordOut | RecordOut[] | null | undefined;
}

export function mapper<Config = any>(def: MapperDefinition<Config>): Wit.Mapping;

// records

export function upsert(stream: string, id: string, payload: unknown, cursor?: string): Wit.Record;
export function remove(stream: string, id: string, cursor?: string): Wit.Record;
export function payloadOf(record: { stream: string; id: string; payload: string }): { [field: string]: any };
export const outcome: {
  created(id: string): Wit.WriteOutcome;
  updated(id: string): Wit.WriteOutcome;
  unchanged(id: string): Wit.WriteOutcome;
  deleted(id: string): Wit.WriteOutcome;
  failed(error: unknown): Wit.WriteOutcome;
};

// http

export function secret(name: string): string;
export class Request {
  constructor(method: Wit.Method, url: string);
  query(name: string, value: string | number | boolean): this;
  header(name: string, value: string): this;
  bearerSecret(secretName: string): this;
  basicAuth(user: string, password: string): this;
  json(value: unknown): this;
  body(body: Uint8Array | string): this;
  timeoutMs(ms: number): this;
  fullUrl(): string;
  send(): Response;
}
export class Response {
  constructor(status: number, headers: [string, string][], body: Uint8Array | string);
  readonly status: number;
  readonly headers: [string, string][];
  readonly body: Uint8Array;
  header(name: string): string | undefined;
  text(): string;
  json(): any;
  retryAfterMs(): number | undefined;
  errorForStatus(what?: string): this;
}
export const http: {
  get(url: string): Request;
  head(url: string): Request;
  post(url: string): Request;
  put(url: string): Request;
  patch(url: string): Request;
  delete(url: string): Request;
};
export function errorForStatus(response: Response, what?: string): NexoError | null;
export function excerpt(text: string): string | undefined;

// kv and secrets

export const kv: {
  get(key: string): Uint8Array | undefined;
  set(key: string, value: Uint8Array): void;
  delete(key: string): void;
  listKeys(prefix: string): string[];
  getText(key: string): string | undefined;
  setText(key: string, text: string): void;
  getJson(key: string): any;
  setJson(key: string, value: unknown): void;
};
export function isSet(name: string): boolean;
export function requireSecret(name: string): void;

// log

export function log(level: Wit.Level, ...parts: unknown[]): void;
export function trace(...parts: unknown[]): void;
export function debug(...parts: unknown[]): void;
export function info(...parts: unknown[]): void;
export function warn(...parts: unknown[]): void;
export function error(...parts: unknown[]): void;
export const hostConsole: Pick<Console, 'log' | 'info' | 'debug' | 'trace' | 'warn' | 'error'>;

// text, numbers

export function encodeUtf8(text: string): Uint8Array;
export function decodeUtf8(bytes: Uint8Array | ArrayLike<number>): string;
export function toU64(n: number | bigint): number | bigint;
export function fromU64(v: number | bigint): number;

// state

export class Cursor {
  value: string | undefined;
  idsAtValue: string[];
  pageToken: string | undefined;
  pagingFrom: string | undefined;
  static fromState(state: string | undefined | null): Cursor;
  static fromJSONValue(value: unknown): Cursor;
  toJSON(): object;
  toState(): string;
  queryValue(): string | undefined;
  setPage(token: string | undefined, queriedFrom: string | undefined): void;
  isSeen(value: string, id: string): boolean;
  observe(value: string, id: string): void;
}

// config

export function validate(schema: object, value: unknown, path?: string): string[];
export function withDefaults(schema: object, value: unknown): unknown;
export function parseConfig(schema: object, text: string): any;
