// A small JSON Schema validator for the subset plugin configs use: type,
// properties, required, additionalProperties (boolean or schema), enum,
// minimum/maximum, minLength/maxLength, pattern, items, default. A config
// is checked before the plugin sees it; every problem names the field path
// and ends the call as `invalid-config`.

import { InvalidConfig } from './errors.js';

/** @typedef {{[k: string]: any}} Schema */

/**
 * The JSON type name of a value as JSON Schema spells it.
 * @param {unknown} v
 * @returns {string}
 */
function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/**
 * @param {unknown} v
 * @param {string} t
 */
function hasType(v, t) {
  const actual = typeOf(v);
  return actual === t || (t === 'number' && actual === 'integer');
}

/**
 * @param {string} path
 * @param {string} key
 */
function child(path, key) {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/**
 * The problems of `value` against `schema`, each naming its path (`$` is
 * the config itself, `$.page_size` a field).
 * @param {Schema} schema
 * @param {unknown} value
 * @param {string} [path]
 * @returns {string[]}
 */
export function validate(schema, value, path = '$') {
  /** @type {string[]} */
  const errors = [];
  if (schema === true || schema === undefined || schema === null) return errors;
  if (schema === false) return [`${path}: no value is allowed here`];
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((/** @type {string} */ t) => hasType(value, t))) {
      return [`${path}: must be ${types.join(' or ')}, not ${typeOf(value)}`];
    }
  }
  if (schema.enum !== undefined && !schema.enum.some((/** @type {unknown} */ e) => JSON.stringify(e) === JSON.stringify(value))) {
    errors.push(`${path}: must be one of ${schema.enum.map((/** @type {unknown} */ e) => JSON.stringify(e)).join(', ')}`);
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${path}: must be at least ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${path}: must be at most ${schema.maximum}`);
  }
  if (typeof value === 'string') {
    const len = Array.from(value).length;
    if (schema.minLength !== undefined && len < schema.minLength) errors.push(`${path}: must be at least ${schema.minLength} characters long`);
    if (schema.maxLength !== undefined && len > schema.maxLength) errors.push(`${path}: must be at most ${schema.maxLength} characters long`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) errors.push(`${path}: must match ${schema.pattern}`);
  }
  if (Array.isArray(value) && schema.items !== undefined) {
    value.forEach((item, i) => errors.push(...validate(schema.items, item, `${path}[${i}]`)));
  }
  if (typeOf(value) === 'object') {
    const obj = /** @type {Record<string, unknown>} */ (value);
    const props = schema.properties ?? {};
    for (const name of schema.required ?? []) {
      if (!(name in obj)) errors.push(`${child(path, name)}: is required`);
    }
    for (const [name, v] of Object.entries(obj)) {
      if (name in props) {
        errors.push(...validate(props[name], v, child(path, name)));
      } else if (schema.additionalProperties === false) {
        errors.push(`${child(path, name)}: is not a known field (known: ${Object.keys(props).join(', ') || 'none'})`);
      } else if (typeof schema.additionalProperties === 'object') {
        errors.push(...validate(schema.additionalProperties, v, child(path, name)));
      }
    }
  }
  return errors;
}

/**
 * A copy of `value` with the schema's `default`s filled in where a field is
 * absent (recursively through `properties`).
 * @param {Schema} schema
 * @param {unknown} value
 * @returns {unknown}
 */
export function withDefaults(schema, value) {
  if (schema === null || typeof schema !== 'object' || typeOf(value) !== 'object') {
    return value;
  }
  const obj = { .../** @type {Record<string, unknown>} */ (value) };
  for (const [name, sub] of Object.entries(schema.properties ?? {})) {
    if (!(name in obj) && sub !== null && typeof sub === 'object' && 'default' in sub) {
      obj[name] = JSON.parse(JSON.stringify(sub.default));
    }
    if (name in obj) {
      obj[name] = withDefaults(sub, obj[name]);
    }
  }
  return obj;
}

/**
 * The config text parsed, validated and completed with defaults; throws
 * `InvalidConfig` naming every field in error.
 * @param {Schema} schema
 * @param {string} text
 * @returns {any}
 */
export function parseConfig(schema, text) {
  let value;
  try {
    value = text.trim() === '' ? {} : JSON.parse(text);
  } catch (e) {
    throw new InvalidConfig(`the config is not JSON: ${e instanceof Error ? e.message : e}`);
  }
  const errors = validate(schema, value);
  if (errors.length > 0) {
    throw new InvalidConfig(`the config does not fit the plugin's schema: ${errors.join('; ')}`);
  }
  return withDefaults(schema, value);
}
