// types/wit.d.ts is written by hand: this checks each record, variant and
// enum of wit/1.1.0/nexo.wit against it (names, fields, cases), so a WIT
// change that the declarations miss fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const wit = readFileSync(new URL('../../../wit/1.1.0/nexo.wit', import.meta.url), 'utf8');
const dts = readFileSync(new URL('../types/wit.d.ts', import.meta.url), 'utf8');

const camel = (/** @type {string} */ s) => s.replace(/^%/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
const pascal = (/** @type {string} */ s) => camel(s).replace(/^[a-z]/, (c) => c.toUpperCase());
const stripComments = (/** @type {string} */ s) => s.replace(/\/\/[^\n]*/g, '');

/** Splits at the commas outside `<...>`. */
function splitTop(/** @type {string} */ s) {
  const parts = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '<') depth++;
    if (ch === '>') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  return parts.concat([cur]);
}

/** Items of one kind in the WIT: name → member names. */
function witItems(kind) {
  const out = new Map();
  const re = new RegExp(`\\b${kind}\\s+(%?[a-z][a-z0-9-]*)\\s*\\{([^}]*)\\}`, 'g');
  for (const m of stripComments(wit).matchAll(re)) {
    const members = splitTop(m[2])
      .map((x) => x.trim())
      .filter((x) => x !== '')
      .map((x) => x.split(/[:(]/)[0].trim().replace(/^%/, ''));
    out.set(m[1].replace(/^%/, ''), members);
  }
  return out;
}

function dtsInterface(name) {
  const m = stripComments(dts).match(new RegExp(`export interface ${name} \\{([^}]*)\\}`));
  assert.ok(m, `types/wit.d.ts has no interface ${name}`);
  return [...m[1].matchAll(/^\s*([A-Za-z]+)\s*:/gm)].map((x) => x[1]);
}

function dtsUnion(name) {
  const m = stripComments(dts).match(new RegExp(`export type ${name} =([^;]*(?:;[^;]*)*?);\\s*\\n\\n`));
  assert.ok(m, `types/wit.d.ts has no type ${name}`);
  return [...m[1].matchAll(/tag: '([a-z-]+)'|^\s*\|?\s*'([a-z-]+)'/gm)].map((x) => x[1] ?? x[2]).concat([...m[1].matchAll(/'([a-z-]+)'/g)].map((x) => x[1])).filter((v, i, a) => a.indexOf(v) === i);
}

test('every WIT record is an interface with the same fields', () => {
  const records = witItems('record');
  assert.ok(records.size >= 10, `found ${records.size} records`);
  for (const [name, fields] of records) {
    assert.deepEqual(dtsInterface(pascal(name)).sort(), fields.map(camel).sort(), `record ${name}`);
  }
});

test('every WIT variant and enum is a union with the same cases', () => {
  const variants = witItems('variant');
  const enums = witItems('enum');
  assert.ok(variants.size >= 5 && enums.size >= 3);
  for (const [name, cases] of [...variants, ...enums]) {
    assert.deepEqual(dtsUnion(pascal(name)).sort(), [...cases].sort(), `${name}`);
  }
});
