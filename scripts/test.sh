#!/usr/bin/env bash
# Quick start, command 2: install whatever is missing, then run every test
# (unit, property, GStreamer, QUIC on loopback, end-to-end with the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash fixtures/generate.sh
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=2
