// connector({...}) and mapper({...}): a plugin's definition in plain JS
// turned into the `operations` / `mapping` export objects componentize-qjs
// binds. They parse and validate the config against the plugin's schema,
// convert records and outcomes to the contract's shapes, and turn every
// thrown value into the WIT `error` (never a trap).

import { Internal, InvalidConfig, NexoError, Rejected, toWitError, witCall } from './errors.js';
import { parseConfig } from './schema.js';
import { payloadOf, toWitRecord } from './records.js';
import { toU64 } from './u64.js';
import { SDK_VERSION } from './version.js';

/** What spec() reports as the SDK. */
export const SDK_NAME = `nexo-sdk-js ${SDK_VERSION}`;

/**
 * @param {any} schema
 * @returns {string}
 */
function schemaText(schema) {
  return typeof schema === 'string' ? schema : JSON.stringify(schema ?? { type: 'object' });
}

/**
 * A stream declaration as the contract's `stream-info`.
 * @param {any} s
 */
function streamInfo(s) {
  const d = typeof s === 'string' ? { name: s } : s;
  return {
    name: String(d.name),
    jsonSchema: schemaText(d.jsonSchema ?? { type: 'object' }),
    primaryKey: d.primaryKey ?? ['id'],
    cursorField: d.cursorField ?? undefined,
    canRead: d.canRead ?? true,
    canWrite: d.canWrite ?? false,
  };
}

/**
 * The `operations` export of a connector.
 * @param {import('./index.js').ConnectorDefinition<any>} def
 */
export function connector(def) {
  const schema = typeof def.configSchema === 'string' ? JSON.parse(def.configSchema) : (def.configSchema ?? { type: 'object' });
  const declared = (def.streams ?? []).map(streamInfo);
  const names = declared.map((s) => s.name);
  const config = (/** @type {string} */ text) => parseConfig(schema, text);
  const known = (/** @type {string} */ stream) => {
    if (names.length > 0 && !names.includes(stream)) {
      throw new InvalidConfig(`unknown stream \`${stream}\`; this connector has ${names.join(', ')}`);
    }
  };
  const caps = def.capabilities ?? {};
  return {
    spec() {
      return {
        sdkVersion: SDK_NAME,
        configSchema: schemaText(schema),
        streams: names,
        capabilities: {
          httpOrigins: caps.httpOrigins ?? [],
          secrets: (caps.secrets ?? []).map((s) => ({ name: s.name, description: s.description ?? '', origins: s.origins ?? [] })),
          kvBytes: toU64(caps.kvBytes ?? 0),
        },
      };
    },
    /** @param {string} text */
    check(text) {
      witCall(() => {
        const c = config(text);
        if (def.check) {
          def.check(c);
        }
      });
    },
    /** @param {string} text */
    discover(text) {
      return witCall(() => {
        const c = config(text);
        return def.discover ? def.discover(c).map(streamInfo) : declared;
      });
    },
    /**
     * @param {string} text
     * @param {string} stream
     * @param {string | undefined} state
     */
    read(text, stream, state) {
      return witCall(() => {
        const c = config(text);
        known(stream);
        const p = def.read(c, stream, state === undefined || state === '' ? undefined : state);
        const st = p.state;
        return {
          records: (p.records ?? []).map((r) => toWitRecord(r, { stream })),
          state: st === undefined || st === null ? undefined : typeof st === 'string' ? st : JSON.stringify(st),
          hasMore: Boolean(p.hasMore),
        };
      });
    },
    /**
     * @param {string} text
     * @param {string} stream
     * @param {import('./records.js').WitWriteRecord[]} batch
     */
    write(text, stream, batch) {
      return witCall(() => {
        const c = config(text);
        known(stream);
        if (!def.write) {
          throw new InvalidConfig(`stream \`${stream}\` cannot be written: this connector only reads`);
        }
        const results = def.write(c, stream, batch);
        if (!Array.isArray(results) || results.length !== batch.length) {
          throw new Internal(`write returned ${Array.isArray(results) ? results.length : 'no'} results for ${batch.length} records; it must return one per record, in batch order`);
        }
        return results.map((r, i) => {
          const o = r && 'outcome' in r ? r.outcome : r;
          const id = r && 'outcome' in r ? String(r.id) : o.tag === 'failed' ? batch[i].id : String(o.val);
          return { id, outcome: o };
        });
      });
    },
  };
}

/**
 * The `mapping` export of a mapper. `map(record, config)` returns the
 * records one input becomes: one, a list (empty: skipped) or null
 * (skipped). A record whose map throws `Rejected`, or anything that is not
 * an SDK error (a bug shown by this record), fails alone and is
 * quarantined; any other SDK error (a bad config, say) fails the batch.
 * @param {import('./index.js').MapperDefinition<any>} def
 */
export function mapper(def) {
  const schema = typeof def.configSchema === 'string' ? JSON.parse(def.configSchema) : (def.configSchema ?? { type: 'object' });
  return {
    /**
     * @param {string} text
     * @param {import('./records.js').WitRecord[]} batch
     */
    map(text, batch) {
      return witCall(() => {
        const c = parseConfig(schema, text);
        return batch.map((input) => {
          try {
            const data = payloadOf(input);
            const out = def.map({ ...input, data }, c);
            const list = out === null || out === undefined ? [] : Array.isArray(out) ? out : [out];
            return { tag: 'mapped', val: list.map((r) => toWitRecord(r, input)) };
          } catch (e) {
            if (e instanceof NexoError && !(e instanceof Rejected) && !(e instanceof Internal)) {
              throw e;
            }
            return { tag: 'failed', val: toWitError(e) };
          }
        });
      });
    },
  };
}
