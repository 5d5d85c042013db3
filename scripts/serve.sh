#!/usr/bin/env bash
# Quick start, command 1: install whatever is missing, build, generate the demo
# clips, and start `sharecast serve` with embedded defaults (data in ./data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash fixtures/generate.sh
cargo build --bin sharecast
# Cargo's target directory: ./target unless CARGO_TARGET_DIR says otherwise.
exec "${CARGO_TARGET_DIR:-target}/debug/sharecast" serve "$@"
