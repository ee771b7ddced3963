// The types of `nexo:connector@1.1.0` (wit/1.1.0/nexo.wit) as the JS
// bindings (componentize-qjs) present them: fields in camelCase, enums as
// strings, variants as `{tag, val}`, options as `undefined`, `list<u8>` as
// Uint8Array, u64 as number (a BigInt with a SpiderMonkey build; the SDK
// converts). Written by hand; test/wit-types.test.mjs checks every record,
// variant and enum here against the WIT file.

/** A WIT u64 as it crosses the boundary. */
export type U64 = number | bigint;

// interface types

export type Operation = 'upsert' | 'delete';

export interface Record {
  stream: string;
  id: string;
  operation: Operation;
  payload: string;
  cursor: string | undefined;
}

export interface WriteRecord {
  stream: string;
  id: string;
  operation: Operation;
  payload: string;
  idempotencyKey: string;
}

export type MapOutcome =
  | { tag: 'mapped'; val: Record[] }
  | { tag: 'failed'; val: Error };

export type Error =
  | { tag: 'invalid-config'; val: string }
  | { tag: 'auth'; val: string }
  | { tag: 'access-denied'; val: string }
  | { tag: 'rate-limited'; val: U64 }
  | { tag: 'transient'; val: string }
  | { tag: 'rejected'; val: string }
  | { tag: 'internal'; val: string };

export interface SecretRequirement {
  name: string;
  description: string;
  origins: string[];
}

export interface Capabilities {
  httpOrigins: string[];
  secrets: SecretRequirement[];
  kvBytes: U64;
}

export interface StreamInfo {
  name: string;
  jsonSchema: string;
  primaryKey: string[];
  cursorField: string | undefined;
  canRead: boolean;
  canWrite: boolean;
}

export interface PluginSpec {
  sdkVersion: string;
  configSchema: string;
  streams: string[];
  capabilities: Capabilities;
}

export interface Page {
  records: Record[];
  state: string | undefined;
  hasMore: boolean;
}

export type WriteOutcome =
  | { tag: 'created'; val: string }
  | { tag: 'updated'; val: string }
  | { tag: 'unchanged'; val: string }
  | { tag: 'deleted'; val: string }
  | { tag: 'failed'; val: Error };

export interface WriteResult {
  id: string;
  outcome: WriteOutcome;
}

// interface log

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

// interface http

export type Method = 'get' | 'head' | 'post' | 'put' | 'patch' | 'delete';

export interface Request {
  method: Method;
  url: string;
  headers: [string, string][];
  basicAuth: [string, string] | undefined;
  body: Uint8Array | undefined;
  timeoutMs: number | undefined;
}

export type ResponseBody =
  | { tag: 'text'; val: string }
  | { tag: 'bytes'; val: Uint8Array };

export interface Response {
  status: number;
  headers: [string, string][];
  body: ResponseBody;
}

export type HttpError =
  | { tag: 'origin-not-allowed'; val: string }
  | { tag: 'address-not-allowed'; val: string }
  | { tag: 'redirect-not-allowed'; val: string }
  | { tag: 'secret-not-allowed'; val: string }
  | { tag: 'invalid-request'; val: string }
  | { tag: 'response-too-large'; val: U64 }
  | { tag: 'timeout' }
  | { tag: 'connection-failed'; val: string }
  | { tag: 'budget-exhausted'; val: U64 }
  | { tag: 'needs-authorization'; val: string };

// interface kv

export type KvError =
  | { tag: 'quota-exceeded'; val: U64 }
  | { tag: 'invalid-key'; val: string }
  | { tag: 'storage'; val: string }
  | { tag: 'not-granted' };

// interface operations (the connector's export)

export interface Operations {
  spec(): PluginSpec;
  check(config: string): void;
  discover(config: string): StreamInfo[];
  read(config: string, stream: string, state: string | undefined): Page;
  write(config: string, stream: string, batch: WriteRecord[]): WriteResult[];
}

// interface mapping (the mapper's export)

export interface Mapping {
  map(config: string, batch: Record[]): MapOutcome[];
}
