#!/usr/bin/env bash
# `npm run fuzz [-- TARGET...]`: runs the cargo-fuzz targets of fuzz/ (all of them by
# default) for FUZZ_SECONDS seconds each (60 by default). Not part of `npm test` or CI.
# Corpora stay in fuzz/corpus/, crashing inputs in fuzz/artifacts/ (reproduce one with
# `cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz builds with nightly flags (sanitizers, coverage); a stable toolchain accepts
# them with RUSTC_BOOTSTRAP.
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

seconds="${FUZZ_SECONDS:-60}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds} s"
  cargo fuzz run "$target" -- -max_total_time="$seconds"
done
