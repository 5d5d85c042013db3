#!/usr/bin/env bash
# Quick start, command 2: install whatever is missing, then run every test
# (unit, property, GStreamer, QUIC on loopback, end-to-end with the real binary),
# then the chaos suite's short form (tests/chaos/run.sh --short; needs root
# for its network namespaces and fails loudly without).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash fixtures/generate.sh
echo "test.sh: setup and fixtures took ${SECONDS} s"
build_start=$SECONDS
cargo build --workspace --all-targets
echo "test.sh: cargo build --workspace --all-targets took $((SECONDS - build_start)) s"
tests_start=$SECONDS
cargo test --workspace --no-fail-fast -- --test-threads=2
echo "test.sh: cargo test took $((SECONDS - tests_start)) s"
chaos_start=$SECONDS
bash tests/chaos/run.sh --short
echo "test.sh: the chaos suite (short form) took $((SECONDS - chaos_start)) s"
