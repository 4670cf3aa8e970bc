'use strict';

// `npm run package [-- --out DIR]`: what would be published, in dist/ (or DIR): the
// main package's tarball, which names every platform package as an optional dependency
// of its exact version (what `napi pre-publish` writes when publishing), and the tarball
// of this machine's platform package with a release build of the addon
// (NODE_SWARM_KB_PROFILE=debug packs a debug build). `--main-only`: the main package alone
// (the release workflow builds the platform packages on their own machines).
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const addon = require('./addon');

const pkg = require('../package.json');
const outAt = process.argv.indexOf('--out');
const out = path.resolve(outAt > 0 ? process.argv[outAt + 1] : path.join(addon.root, 'dist'));
fs.mkdirSync(out, { recursive: true });

// `npm pack` of `dir` into `out`; returns the tarball's path.
function pack (dir) {
  const [packed] = JSON.parse(execFileSync('npm', ['pack', dir, '--json', '--pack-destination', out], { encoding: 'utf8' }));
  return path.join(out, packed.filename);
}

const optionalDependencies = {};
for (const name of fs.readdirSync(path.join(addon.root, 'npm'))) {
  const platformPkg = require(path.join(addon.root, 'npm', name, 'package.json'));
  if (platformPkg.version !== pkg.version) {
    throw new Error(`npm/${name} is at ${platformPkg.version}, the package at ${pkg.version}: run \`npx napi version\``);
  }
  optionalDependencies[platformPkg.name] = pkg.version;
}

// This machine's platform package, with the addon built here.
function packPlatform () {
  const platform = addon.hostPlatform();
  const platformDir = path.join(addon.root, 'npm', platform);
  if (!fs.existsSync(platformDir)) throw new Error(`no platform package for ${platform} in npm/`);
  fs.copyFileSync(addon.build(addon.profile()), path.join(platformDir, addon.binaryFile(platform)));
  return pack(platformDir);
}
const platformTarball = process.argv.includes('--main-only') ? null : packPlatform();

// The main package: the files `npm pack` takes, with the optional dependencies added.
const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'node-swarm-kb-pack-'));
try {
  const [listed] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json'], { cwd: addon.root, encoding: 'utf8' }));
  for (const { path: file } of listed.files) {
    fs.mkdirSync(path.join(stage, path.dirname(file)), { recursive: true });
    fs.copyFileSync(path.join(addon.root, file), path.join(stage, file));
  }
  const published = Object.assign({}, pkg, { optionalDependencies });
  fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);
  console.log(pack(stage));
} finally {
  fs.rmSync(stage, { recursive: true, force: true });
}
if (platformTarball) console.log(platformTarball);
