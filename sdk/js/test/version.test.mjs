import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SDK_VERSION, WIT_VERSION } from '../src/index.js';

test('the version in the code is the package version, the WIT folder exists', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(SDK_VERSION, pkg.version);
  // The contract ships in the package (npm pack), equal to the released folder.
  const shipped = readFileSync(new URL(`../wit/${WIT_VERSION}/nexo.wit`, import.meta.url), 'utf8');
  assert.equal(shipped, readFileSync(new URL(`../../../wit/${WIT_VERSION}/nexo.wit`, import.meta.url), 'utf8'));
});
