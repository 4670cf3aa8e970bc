'use strict';

// This machine's platform as napi-rs names its packages and binaries: `linux-x64-gnu`,
// `linux-arm64-musl`, `darwin-arm64`, `win32-x64-msvc`...
const fs = require('fs');

// musl as napi-rs's loader tells it: what ldd is, else whether Node runs on a glibc.
function isMusl () {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl');
  } catch (_) {
    const report = process.report && process.report.getReport();
    return !(report && report.header && report.header.glibcVersionRuntime);
  }
}

function platformOf (platform, arch, musl) {
  if (platform === 'linux') return `linux-${arch}-${musl ? 'musl' : 'gnu'}`;
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

const hostPlatform = () => platformOf(process.platform, process.arch, process.platform === 'linux' && isMusl());

module.exports = { isMusl, platformOf, hostPlatform };
