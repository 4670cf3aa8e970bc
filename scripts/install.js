'use strict';

// `npm install`: use a prebuilt binary when one loads on this platform, otherwise build
// the addon from source with cargo (release profile; NODE_SWARM_KB_PROFILE=debug for a
// faster, unoptimized build).
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');

function loads () {
  try {
    require(path.join(root, 'binding.js'));
    return true;
  } catch (_) {
    return false;
  }
}

function platformSuffix () {
  const { platform, arch } = process;
  if (platform !== 'linux') return `${platform}-${arch}`;
  const musl = !process.report || !process.report.getReport().header.glibcVersionRuntime;
  return `linux-${arch}-${musl ? 'musl' : 'gnu'}`;
}

if (process.env.NODE_SWARM_KB_FORCE_BUILD !== '1' && loads()) process.exit(0);

const profile = process.env.NODE_SWARM_KB_PROFILE === 'debug' ? 'debug' : 'release';
const args = ['build', '-p', 'node-swarm-kb', '--lib'];
if (profile === 'release') args.push('--release');
console.log(`[node-swarm-kb] building the native addon from source (cargo ${args.join(' ')})`);
try {
  execFileSync('cargo', args, { cwd: root, stdio: 'inherit' });
} catch (error) {
  console.error('[node-swarm-kb] building the addon failed: install Rust (https://rustup.rs) and retry');
  process.exit(1);
}
const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
const ext = process.platform === 'darwin' ? 'dylib' : process.platform === 'win32' ? 'dll' : 'so';
const lib = `${process.platform === 'win32' ? '' : 'lib'}node_swarm_kb.${ext}`;
fs.copyFileSync(path.join(targetDir, profile, lib), path.join(root, `node-swarm-kb.${platformSuffix()}.node`));
if (!loads()) {
  console.error('[node-swarm-kb] the built addon does not load');
  process.exit(1);
}
