#!/usr/bin/env node
// Builds a JavaScript Nexo plugin into a WebAssembly component:
//
//   node sdk/js/build.mjs PLUGIN_DIR -o OUT.wasm
//   npx nexo-build PLUGIN_DIR -o OUT.wasm      (the SDK installed from npm)
//
// PLUGIN_DIR holds `nexo-plugin.toml` (id, version, kind) and the ES module
// `src/index.js` (more modules beside it are fine: imports are resolved at
// build time). The plugin imports the SDK as `nexo-sdk`. The build stages
// the plugin's `src/` and the SDK in a temporary directory (the plugin as
// `plugin/`, the SDK as `node_modules/nexo-sdk/`, the plugin's own
// `node_modules/` beside it), runs componentize-qjs with the synchronous
// ABI (`--sync`: the host does not enable component-model async) against
// the WIT `wit/1.1.0` shipped in this package for the manifest's kind, and appends the `nexo-sdk`
// custom section (`sdk=js-X;wit=1.1.0;plugin=ID;version=V`) that
// `nexo plugin inspect`/`pack` read.
//
// componentize-qjs comes from $NEXO_JS_HOME, else the plugin's own
// node_modules (a devDependency of a project `nexo new` wrote), else a Nexo
// checkout's target/js (`cargo xtask setup`).

import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SDK_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(SDK_DIR, '..', '..');

/** A build failure: its message says what is wrong and how to fix it. */
class BuildError extends Error {}

/**
 * @param {string[]} argv
 * @returns {{plugin: string, out: string, optSize: boolean}}
 */
function parseArgs(argv) {
  let plugin;
  let out;
  let optSize = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-o' || a === '--output') {
      out = argv[++i];
    } else if (a === '--opt-size') {
      optSize = true;
    } else if (a === '-h' || a === '--help') {
      console.log('usage: node sdk/js/build.mjs PLUGIN_DIR -o OUT.wasm [--opt-size]');
      process.exit(0);
    } else if (plugin === undefined) {
      plugin = a;
    } else {
      throw new BuildError(`unexpected argument \`${a}\`; usage: node sdk/js/build.mjs PLUGIN_DIR -o OUT.wasm`);
    }
  }
  if (plugin === undefined || out === undefined) {
    throw new BuildError('usage: node sdk/js/build.mjs PLUGIN_DIR -o OUT.wasm [--opt-size]');
  }
  return { plugin: resolve(plugin), out: resolve(out), optSize };
}

/**
 * The top-level `key = "value"` strings of a TOML manifest (before its
 * first table); enough for id, version and kind.
 * @param {string} text
 * @returns {Record<string, string>}
 */
export function manifestFields(text) {
  /** @type {Record<string, string>} */
  const fields = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) break;
    const m = line.match(/^([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(#.*)?$/);
    if (m) fields[m[1]] = m[2];
  }
  return fields;
}

/**
 * The plugin's id, version and kind from its nexo-plugin.toml.
 * @param {string} dir
 */
function readManifest(dir) {
  const path = join(dir, 'nexo-plugin.toml');
  if (!existsSync(path)) {
    throw new BuildError(`${path} is missing: a plugin folder needs its manifest (id, version, kind)`);
  }
  const f = manifestFields(readFileSync(path, 'utf8'));
  for (const key of ['id', 'version', 'kind']) {
    if (!f[key]) throw new BuildError(`${path} has no top-level \`${key} = "..."\``);
  }
  if (f.kind !== 'connector' && f.kind !== 'mapper') {
    throw new BuildError(`${path}: kind is \`${f.kind}\`; it must be "connector" or "mapper"`);
  }
  return { id: f.id, version: f.version, kind: f.kind };
}

/**
 * The componentize-qjs executable: $NEXO_JS_HOME's, else the plugin's
 * (`npm install` of its devDependencies), else a Nexo checkout's.
 * @param {string} plugin
 */
function componentizer(plugin) {
  const homes = process.env.NEXO_JS_HOME
    ? [resolve(process.env.NEXO_JS_HOME)]
    : [plugin, join(ROOT, 'target', 'js')];
  for (const home of homes) {
    const bin = join(home, 'node_modules', '.bin', 'componentize-qjs');
    if (existsSync(bin)) return bin;
  }
  throw new BuildError(`componentize-qjs is not installed (looked in ${homes.map((h) => join(h, 'node_modules', '.bin')).join(', ')}); run \`npm install --save-dev componentize-qjs@0.4.5\` in the plugin, or \`cargo xtask setup\` in a Nexo checkout`);
}

/**
 * `n` as unsigned LEB128.
 * @param {number} n
 */
function leb128(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/**
 * A custom section (id 0) named `name` holding `data`.
 * @param {string} name
 * @param {string} data
 */
export function customSection(name, data) {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.from(data, 'utf8');
  const payload = Buffer.concat([Buffer.from(leb128(n.length)), n, d]);
  return Buffer.concat([Buffer.from([0]), Buffer.from(leb128(payload.length)), payload]);
}

/**
 * Builds the plugin in `plugin` into `out`; the component's size.
 * @param {{plugin: string, out: string, optSize: boolean}} args
 */
export function build({ plugin, out, optSize }) {
  const manifest = readManifest(plugin);
  const entry = join(plugin, 'src', 'index.js');
  if (!existsSync(entry)) {
    throw new BuildError(`${entry} is missing: a JS plugin's entry module is src/index.js`);
  }
  const sdk = JSON.parse(readFileSync(join(SDK_DIR, 'package.json'), 'utf8'));
  const wit = join(SDK_DIR, 'wit', '1.1.0');
  const bin = componentizer(plugin);

  mkdirSync(dirname(out), { recursive: true });
  const stage = mkdtempSync(join(tmpdir(), 'nexo-js-build-'));
  try {
    cpSync(join(plugin, 'src'), join(stage, 'plugin'), { recursive: true });
    if (existsSync(join(plugin, 'node_modules'))) {
      // The plugin's dependencies, without the toolchain (tens of MB) and
      // the SDK (staged below from this copy).
      const skip = /[\\/]node_modules[\\/](\.bin|componentize-qjs|@andreiltd|nexo-sdk)([\\/]|$)/;
      cpSync(join(plugin, 'node_modules'), join(stage, 'node_modules'), {
        recursive: true,
        filter: (src) => !skip.test(src),
      });
    }
    const sdkStage = join(stage, 'node_modules', 'nexo-sdk');
    cpSync(join(SDK_DIR, 'package.json'), join(sdkStage, 'package.json'));
    cpSync(join(SDK_DIR, 'src'), join(sdkStage, 'src'), { recursive: true });
    if (manifest.kind === 'mapper') {
      // A mapper's world imports only `log`: the connector imports must not
      // appear in its component.
      cpSync(join(SDK_DIR, 'src', 'host-net-mapper.js'), join(sdkStage, 'src', 'host-net.js'));
    }
    const args = ['--wit', wit, '--js', join(stage, 'plugin', 'index.js'), '--module-root', stage, '-n', manifest.kind, '--sync', '-o', out];
    if (optSize) args.push('--opt-size');
    const run = spawnSync(bin, args, { encoding: 'utf8' });
    if (run.error) {
      throw new BuildError(`cannot run ${bin}: ${run.error.message}; run \`cargo xtask setup\``);
    }
    if (run.status !== 0) {
      const said = `${run.stdout}\n${run.stderr}`.trim().split(stage).join('<build>');
      throw new BuildError(`componentize-qjs could not build ${plugin} (exit ${run.status}):\n${said}`);
    }
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  const section = customSection('nexo-sdk', `sdk=js-${sdk.version};wit=1.1.0;plugin=${manifest.id};version=${manifest.version}`);
  writeFileSync(out, Buffer.concat([readFileSync(out), section]));
  return statSync(out).size;
}

// Run as a script: directly, or through npm's `nexo-build` link (a symlink
// in node_modules/.bin, hence the real path).
if (process.argv[1] && realpathSync(resolve(process.argv[1])) === realpathSync(fileURLToPath(import.meta.url))) {
  try {
    const args = parseArgs(process.argv.slice(2));
    const size = build(args);
    console.log(`built ${args.out} (${size} bytes)`);
  } catch (e) {
    if (e instanceof BuildError) {
      console.error(`error: ${e.message}`);
      process.exit(1);
    }
    throw e;
  }
}
