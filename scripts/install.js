'use strict';

// `npm install`: nothing to do when a binary loads (the prebuilt package of this
// platform, an optional dependency, or one built before). Otherwise the addon is built
// from source when cargo is there (release profile; NODE_SWARM_KB_PROFILE=debug for a
// faster, unoptimized build), and the install fails with what to do when it is not.
// An install for another platform (`--os`, `--cpu`, `--libc`) builds nothing.
const fs = require('fs');
const path = require('path');
const addon = require('./addon');

function loads () {
  try {
    require(path.join(addon.root, 'binding.js'));
    return true;
  } catch (_) {
    return false;
  }
}

if (process.env.NODE_SWARM_KB_FORCE_BUILD !== '1' && loads()) process.exit(0);

const platform = addon.hostPlatform();
const target = addon.installTarget();
if (target) {
  console.log(`[node-swarm-kb] installing for ${target} on ${platform}: nothing to build here; the package of ${target} loads where it runs`);
  process.exit(0);
}

if (!addon.hasCargo()) {
  const shipped = addon.shippedPackages();
  const ours = `node-swarm-kb-${platform}`;
  console.error([
    `[node-swarm-kb] no binary of the native addon for ${platform} is installed, and Rust (cargo) is not on PATH to build one.`,
    shipped.includes(ours)
      ? `  Its prebuilt package ${ours} is an optional dependency: install with optional dependencies (npm i --include=optional, without --omit=optional or --no-optional).`
      : `  There is no prebuilt package for ${platform}; the platforms we ship: ${shipped.join(', ')}.`,
    '  Or install Rust (https://rustup.rs) to build it from source.'
  ].join('\n'));
  process.exit(1);
}

try {
  fs.copyFileSync(addon.build(addon.profile()), path.join(addon.root, addon.binaryFile(platform)));
} catch (error) {
  console.error(`[node-swarm-kb] building the addon from source failed: ${error.message}`);
  process.exit(1);
}
if (!loads()) {
  console.error('[node-swarm-kb] the built addon does not load');
  process.exit(1);
}
