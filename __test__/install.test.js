'use strict';

// The user's path: the tarballs of `npm run package` installed into a fresh app, with
// no Rust on PATH and nothing from a registry (the package's dependencies are packed
// from this checkout's node_modules and installed by path, offline).
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { hostPlatform } = require('../lib/platform');
const { run, installApp, useApp } = require('../scripts/smoke');

const ROOT = path.join(__dirname, '..');
const PLATFORM = hostPlatform();
let tmp;
let tarballs;
let deps;

// PATH without the folders that hold cargo or rustc.
const NO_RUST_PATH = process.env.PATH.split(path.delimiter)
  .filter(dir => !['cargo', 'rustc'].some(tool => fs.existsSync(path.join(dir, tool))))
  .join(path.delimiter);
const withoutRust = { env: Object.assign({}, process.env, { PATH: NO_RUST_PATH }) };

// The package's dependencies and theirs, by name, as this checkout installed them.
function dependencies (names, found = new Set()) {
  for (const name of names) {
    if (found.has(name)) continue;
    found.add(name);
    dependencies(Object.keys(require(path.join(ROOT, 'node_modules', name, 'package.json')).dependencies || {}), found);
  }
  return found;
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'node-swarm-kb-install-'));
  const dist = path.join(tmp, 'dist');
  const packed = await run(process.execPath, [path.join(ROOT, 'scripts', 'package.js'), '--out', dist], {
    env: Object.assign({}, process.env, { NODE_SWARM_KB_PROFILE: 'debug' }), timeout: 600000
  });
  assert.strictEqual(packed.code, 0, packed.stderr);
  tarballs = packed.stdout.trim().split('\n').slice(-2);
  deps = [];
  for (const name of dependencies(Object.keys(require('../package.json').dependencies))) {
    const out = await run('npm', ['pack', path.join(ROOT, 'node_modules', name), '--pack-destination', dist, '--json']);
    deps.push(path.join(dist, JSON.parse(out.stdout)[0].filename));
  }
});

after(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

// A fresh app, `specs` installed offline with no Rust on PATH.
async function app (name, specs, flags = []) {
  const dir = path.join(tmp, name);
  return Object.assign({ dir }, await installApp(dir, specs, Object.assign({ flags: ['--offline', ...flags] }, withoutRust)));
}

// What the smoke test's app printed; its process must exit by itself.
async function use (dir) {
  const used = await useApp(dir, withoutRust.env);
  assert.strictEqual(used.code, 0, `the app exits by itself: ${used.stderr}`);
  return used.outcome;
}

test('no Rust on PATH for these tests', async () => {
  assert.notStrictEqual((await run('cargo', ['--version'], withoutRust)).code, 0);
});

test('the two tarballs install into a fresh app, with no Rust, and it runs', async () => {
  const installed = await app('full', [...deps, ...tarballs], []);
  assert.strictEqual(installed.code, 0, installed.stderr);
  assert.ok(!/building the native addon/.test(installed.stdout + installed.stderr), 'nothing was built');
  assert.deepStrictEqual(await use(installed.dir), { value: 42 });
  const shipped = fs.readdirSync(path.join(installed.dir, 'node_modules', 'node-swarm-kb'));
  assert.deepStrictEqual(shipped.filter(f => /test|bench|fuzz/.test(f)), [], 'no tests, benches or fuzz targets');
  // Of the examples, only the Kubernetes manifests that the README links to.
  const examples = path.join(installed.dir, 'node_modules', 'node-swarm-kb', 'examples');
  assert.deepStrictEqual(fs.readdirSync(examples), ['kubernetes'], 'no example programs');
  assert.ok(fs.readdirSync(path.join(examples, 'kubernetes')).every(f => f.endsWith('.yaml')), 'manifests only');
});

test('with --ignore-scripts too', async () => {
  const installed = await app('ignore-scripts', [...deps, ...tarballs], ['--ignore-scripts']);
  assert.strictEqual(installed.code, 0, installed.stderr);
  assert.deepStrictEqual(await use(installed.dir), { value: 42 });
});

test('an install for another platform does not fail; there, require() works and init() names the missing binary', async () => {
  const installed = await app('cross', [...deps, tarballs[0]], ['--os=linux', '--cpu=arm64', '--libc=glibc', '--foreground-scripts']);
  assert.strictEqual(installed.code, 0, installed.stderr);
  assert.match(installed.stdout, new RegExp(`installing for linux-arm64-gnu on ${PLATFORM}: nothing to build here`));
  const outcome = await use(installed.dir);
  assert.strictEqual(outcome.code, 'ERR_SWARM_NO_BINARY');
  assert.match(outcome.message, new RegExp(`on ${PLATFORM}: .*--include=optional.*node-swarm-kb-${PLATFORM}`));
});

test('without the optional packages and without Rust, the install fails and says why and what to do', async () => {
  const installed = await app('omit-optional', [...deps, tarballs[0]], ['--omit=optional']);
  assert.notStrictEqual(installed.code, 0);
  assert.match(installed.stderr, new RegExp(`no binary of the native addon for ${PLATFORM} is installed, and Rust \\(cargo\\) is not on PATH`));
  assert.match(installed.stderr, new RegExp(`node-swarm-kb-${PLATFORM} is an optional dependency: install with optional dependencies \\(npm i --include=optional`));
  assert.match(installed.stderr, /install Rust/);
});
