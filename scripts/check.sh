#!/usr/bin/env bash
# The developer loop's checks, run before the tests (scripts/test.sh) and by
# `make check`: formatting, lints, documentation and the links of the docs.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "check: cargo fmt --check"
cargo fmt --all -- --check
echo "check: cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "check: cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "check: relative links of README.md and docs/"
python3 scripts/check_links.py
echo "check: no non-test function over 80 lines"
python3 scripts/check_fn_length.py
