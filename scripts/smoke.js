'use strict';

// The package's smoke test, as a user meets it: tarballs of `npm run package` (the main
// package and a platform package) installed into a fresh app, where a standalone node
// runs a task and closes, and the process then exits by itself.
//
//   node scripts/smoke.js [npm install flags] DIR | TARBALL...
//
// (DIR: every tarball in it.)
// The release workflow runs it on every platform; install.test.js uses its parts.
const { execFile } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

// Runs `command` with `args`; resolves with `{ code, stdout, stderr }`.
function run (command, args, options = {}) {
  return new Promise(resolve => {
    const defaults = { timeout: 300000, maxBuffer: 16 * 1024 * 1024, shell: process.platform === 'win32' };
    execFile(command, args, Object.assign(defaults, options), (error, stdout, stderr) =>
      resolve({ code: error ? error.code || 1 : 0, stdout, stderr }));
  });
}

// A fresh app in `dir` with `specs` installed by `npm install ...flags`. It lets our
// install script run (npm 11 runs a dependency's only when the app allows it).
function installApp (dir, specs, { flags = [], env = process.env } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const app = { name: path.basename(dir), version: '1.0.0', private: true, allowScripts: { 'node-swarm-kb': true } };
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(app));
  return run('npm', ['install', '--no-audit', '--no-fund', ...flags, ...specs.map(spec => path.resolve(spec))], { cwd: dir, env });
}

// A standalone node, a task run and close(): prints the task's value, or the error's code
// and message.
const USE = `
const swarm = require('node-swarm-kb');
swarm.tasks.register('double', x => x * 2);
swarm.init({ standalone: true })
  .then(() => swarm.tasks.exec('double', 21))
  .then(value => { console.log(JSON.stringify({ value })); return swarm.close(); },
    error => console.log(JSON.stringify({ code: error.code, message: error.message })));
`;

// Runs USE in the app of `dir`: `{ code, stderr, outcome }`, the outcome being what it
// printed last (`{ value: 42 }` when all went well).
async function useApp (dir, env = process.env) {
  const ran = await run(process.execPath, ['-e', USE], { cwd: dir, env, timeout: 30000, shell: false });
  const last = ran.stdout.trim().split('\n').pop();
  let outcome = null;
  try {
    outcome = JSON.parse(last);
  } catch (_) {}
  return { code: ran.code, stderr: ran.stderr, outcome };
}

module.exports = { run, installApp, useApp, USE };

if (require.main === module) {
  const args = process.argv.slice(2);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-swarm-kb-smoke-'));
  (async () => {
    const started = Date.now();
    const specs = args.filter(a => !a.startsWith('--')).flatMap(spec => fs.statSync(spec).isDirectory()
      ? fs.readdirSync(spec).filter(f => f.endsWith('.tgz')).map(f => path.join(spec, f))
      : [spec]);
    const installed = await installApp(dir, specs, { flags: args.filter(a => a.startsWith('--')) });
    if (installed.code !== 0) throw new Error(`npm install failed:\n${installed.stderr}`);
    console.log(`installed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const used = await useApp(dir);
    console.log(JSON.stringify(used.outcome));
    if (used.code !== 0 || !used.outcome || used.outcome.value !== 42) throw new Error(`the app failed (exit ${used.code}):\n${used.stderr}`);
  })().then(() => fs.rmSync(dir, { recursive: true, force: true }), error => {
    console.error(error.message);
    process.exitCode = 1;
  });
}
