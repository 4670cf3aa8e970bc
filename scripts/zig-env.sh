# Sourced by cross.sh and check-targets.sh, from the repository's root: zig (from the
# Python package index, into .venv) and cargo-zigbuild (from crates.io) on PATH.
.venv/bin/python -c "import ziglang" 2>/dev/null || {
  python3 -m venv .venv
  .venv/bin/pip install --quiet -r scripts/cross-requirements.txt
}
export PATH="$PWD/.venv/bin:$PATH"
command -v cargo-zigbuild >/dev/null || cargo install cargo-zigbuild --locked
