'use strict';

// How users load the package: ESM named imports (run by Node, not only type-checked),
// a destructured require(), and standalone processes side by side on one machine (two
// services, two test workers): a standalone node listens on nothing unless told where.
const { test } = require('node:test');
const assert = require('node:assert');
const { execFile } = require('node:child_process');
const path = require('node:path');

const APPS = path.join(__dirname, 'fixtures', 'apps');

// Runs an app to its end (it must exit by itself); resolves with its JSON line, the only
// line it prints: a standalone node asked for prints nothing of its own.
function run (file) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [path.join(APPS, file)], { timeout: 30000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`${file}: ${error.message}\n${stderr}`));
      const lines = stdout.trim().split('\n');
      assert.strictEqual(lines.length, 1, `only the app's own output: ${stdout}`);
      resolve(JSON.parse(lines[0]));
    });
  });
}

test('ESM: named imports are the facade\'s, the same singleton as require()', async () => {
  assert.deepStrictEqual(await run('esm.mjs'), {
    same: true,
    doubled: 42,
    pong: { pong: { n: 1 } },
    local: '{"pong":"x"}', // a string request's reply comes back as raw text, as in 0.5.1
    toSelf: { pong: {} },
    ring: '10.0.0.1',
    rings: [true, true],
    port: null
  });
});

test('a destructured require(): every function works detached; a node may be named by its host name', async () => {
  assert.deepStrictEqual(await run('destructured.js'), { doubled: 8, pong: 'pong x', me: true });
});

test('standalone processes side by side: none listens, each answers itself', async () => {
  const results = await Promise.all([run('esm.mjs'), run('esm.mjs'), run('destructured.js')]);
  assert.strictEqual(results.length, 3);
  for (const result of results) assert.ok(!('port' in result) || result.port === null, 'listens on nothing');
});
