#!/usr/bin/env bash
# `npm test`: lint, the engine's tests, the typings, then the JavaScript tests against
# the built addon (built by `npm install`; rebuilt here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== rustdoc (every link resolves)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "== fuzz targets compile (run them with npm run fuzz)"
cargo check --manifest-path fuzz/Cargo.toml
echo "== engine tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace
fi
echo "== addon"
node scripts/install.js
echo "== typings"
for config in __test__/types/tsconfig*.json; do echo "tsc -p $config"; npx tsc -p "$config"; done
echo "== manifests (strict schema check against Kubernetes 1.33)"
if [ ! -x .venv/bin/kubernetes-validate ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet -r examples/kubernetes/requirements.txt
fi
.venv/bin/kubernetes-validate --strict --quiet -k 1.33.0 examples/kubernetes/*.yaml
echo "== JavaScript tests"
node --test --test-concurrency=1 __test__/*.test.js
echo "== fault suite (network namespaces; needs root)"
npm run --silent test:faults
