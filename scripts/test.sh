#!/usr/bin/env bash
# Quick start, command 2: install whatever is missing, then run every test
# (unit, property, GStreamer, QUIC on loopback, end-to-end with the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash fixtures/generate.sh
echo "test.sh: setup and fixtures took ${SECONDS} s"
build_start=$SECONDS
cargo build --workspace --all-targets
# The build's wall time, printed before the tests so that cargo test's own
# summary stays the last thing printed (test time = total - this - setup).
echo "test.sh: cargo build --workspace --all-targets took $((SECONDS - build_start)) s"
cargo test --workspace --no-fail-fast -- --test-threads=2
