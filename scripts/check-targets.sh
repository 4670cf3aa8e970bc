#!/usr/bin/env bash
# `npm run check:targets`: `cargo check` of the addon and the engine for every platform we
# ship, from this Linux machine, through cargo-zigbuild (zig as the C compiler of the
# dependencies' C code). Nothing is linked or run: that is the release workflow's job on
# each platform's own runner.
#
# Windows (x86_64-pc-windows-msvc): ring's C code needs MSVC's compiler or clang-cl, which
# Linux does not have, so our Windows code is checked as x86_64-pc-windows-gnu, the same
# `cfg(windows)` code. napi-build wants `libnode.dll` to link that target; a check links
# nothing, so an empty file stands in for it.
#
# Needs rustup (each target's standard library) and pip (zig, into .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(
  x86_64-unknown-linux-gnu
  aarch64-unknown-linux-gnu
  x86_64-unknown-linux-musl
  aarch64-unknown-linux-musl
  aarch64-apple-darwin
  x86_64-apple-darwin
  x86_64-pc-windows-gnu
)

source scripts/zig-env.sh
rustup target add "${TARGETS[@]}"
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
touch "$stub/libnode.dll"

for target in "${TARGETS[@]}"; do
  echo "== $target"
  LIBNODE_PATH=$stub cargo-zigbuild check --workspace --target "$target"
done
echo "checked: ${TARGETS[*]}"
