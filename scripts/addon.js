'use strict';

// The addon's platforms and its build from source, shared by the install script and
// `npm run package`. A platform is named as napi-rs names its packages:
// `linux-x64-gnu`, `linux-arm64-musl`, `darwin-arm64`, `win32-x64-msvc`...
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { isMusl, platformOf, hostPlatform } = require('../lib/platform');

const root = path.join(__dirname, '..');
const pkg = require('../package.json');

// The platform npm installs for when it is told another one (`--os`, `--cpu`, `--libc`,
// as multi-arch Docker builds do), else null.
function installTarget (env = process.env) {
  const os = env.npm_config_os || process.platform;
  const cpu = env.npm_config_cpu || process.arch;
  const musl = env.npm_config_libc ? env.npm_config_libc === 'musl' : process.platform === 'linux' && isMusl();
  const target = platformOf(os, cpu, os === 'linux' && musl);
  return target === hostPlatform() ? null : target;
}

// The packages of the platforms we ship prebuilt (`napi.targets`, as Rust target triples).
function shippedPackages () {
  const arch = { x86_64: 'x64', aarch64: 'arm64' };
  return pkg.napi.targets.map(triple => {
    const [cpu, , os, abi] = triple.split('-');
    const platform = os === 'darwin' ? 'darwin' : os === 'windows' ? 'win32' : os;
    return `${pkg.napi.binaryName}-${platformOf(platform, arch[cpu] || cpu, abi === 'musl')}`;
  });
}

function hasCargo () {
  try {
    execFileSync('cargo', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (_) {
    return false;
  }
}

// Builds the addon with cargo (`release` or `debug`) and returns the built library's path.
function build (profile) {
  const args = ['build', '-p', 'node-swarm-kb', '--lib'];
  if (profile === 'release') args.push('--release');
  console.log(`[node-swarm-kb] building the native addon from source (cargo ${args.join(' ')})`);
  execFileSync('cargo', args, { cwd: root, stdio: 'inherit' });
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
  const ext = process.platform === 'darwin' ? 'dylib' : process.platform === 'win32' ? 'dll' : 'so';
  const lib = `${process.platform === 'win32' ? '' : 'lib'}node_swarm_kb.${ext}`;
  return path.join(targetDir, profile, lib);
}

const profile = () => process.env.NODE_SWARM_KB_PROFILE === 'debug' ? 'debug' : 'release';

// The addon's file name for `platform`, as the loader (binding.js) looks for it.
const binaryFile = platform => `${pkg.napi.binaryName}.${platform}.node`;

module.exports = { root, hostPlatform, installTarget, shippedPackages, hasCargo, build, profile, binaryFile };
