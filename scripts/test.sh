#!/usr/bin/env bash
# Quick start, command 2: install whatever is missing, then run every test
# (unit, property, GStreamer, QUIC on loopback, end-to-end with the real binary),
# then the chaos suite's short form (tests/chaos/run.sh --short; needs root
# for its network namespaces and fails loudly without) and every fuzz target
# for a few seconds (scripts/fuzz.sh --short).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash fixtures/generate.sh
echo "test.sh: setup and fixtures took ${SECONDS} s"
# The developer loop's checks first (formatting, lints, docs, links,
# function length): CI enforces them.
check_start=$SECONDS
bash scripts/check.sh
echo "test.sh: checks took $((SECONDS - check_start)) s"
build_start=$SECONDS
cargo build --workspace --all-targets
echo "test.sh: cargo build --workspace --all-targets took $((SECONDS - build_start)) s"
# A throwaway PostgreSQL (stopped on exit unless it was running before):
# the store, share and resume tests and the in-process server run again on
# it, each test in a fresh database.
if ! bash scripts/postgres.sh status; then
  bash scripts/postgres.sh start
  trap 'bash scripts/postgres.sh stop' EXIT
fi
status=0
tests_start=$SECONDS
cargo test --workspace --no-fail-fast -- --test-threads=2 || status=$?
echo "test.sh: the store's tests, the share and resume services and the in-process server on PostgreSQL"
SHARECAST_TEST_STORE=postgres cargo test --no-fail-fast \
  -p sharecast-store -p sharecast-share -p sharecast-resume -- --test-threads=2 || status=$?
SHARECAST_TEST_STORE=postgres cargo test -p sharecast --test in_process || status=$?
echo "test.sh: cargo test took $((SECONDS - tests_start)) s"
# The chaos suite's short form (tests/chaos/run.sh; about two minutes; needs
# root for its network namespaces and fails loudly without).
chaos_start=$SECONDS
bash tests/chaos/run.sh --short || status=$?
echo "test.sh: the chaos suite (short form) took $((SECONDS - chaos_start)) s"
# The soak's short form (tests/chaos/soak.sh: 10 phones for 60 s on
# loopback, viewers, RSS and descriptors sampled, no ERROR logged).
soak_start=$SECONDS
bash tests/chaos/soak.sh --short || status=$?
echo "test.sh: the soak (short form) took $((SECONDS - soak_start)) s"
# The decoders under libFuzzer, about 12 s a target (scripts/fuzz.sh; the
# full run is `make fuzz`).
fuzz_start=$SECONDS
bash scripts/fuzz.sh --short || status=$?
echo "test.sh: fuzzing (short form) took $((SECONDS - fuzz_start)) s"
exit $status
