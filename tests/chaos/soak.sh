#!/usr/bin/env bash
# The soak (docs/reliability.md, "One-hour soak"): `make soak` (50 phones,
# one hour) and `--short` (10 phones, 60 s; CI runs it from scripts/test.sh
# after the chaos suite's short form). Phones push in real time on
# loopback, viewers join and leave, the server's RSS and descriptors are
# sampled every 10 s; tests/chaos/soak.py does the work and says what it
# checks. No root needed.
#
#   bash tests/chaos/soak.sh [--short] [--phones N] [--seconds S]
#
# SHARECAST_BIN: the binary to run (default target/debug/sharecast; the
# full form runs a copy, so a rebuild during the hour changes nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SHARECAST_BIN:-$PWD/target/debug/sharecast}
[ -x "$BIN" ] || { echo "soak: no $BIN (run cargo build first)" >&2; exit 1; }
for tool in ffmpeg ffprobe gst-launch-1.0 python3; do
  command -v "$tool" >/dev/null || { echo "soak: $tool not found" >&2; exit 1; }
done
mkdir -p target/soak
COPY=$(mktemp -p target/soak sharecast.XXXXXX)
trap 'rm -f "$COPY"' EXIT
cp "$BIN" "$COPY"
chmod 755 "$COPY"
SHARECAST_BIN=$PWD/$COPY python3 tests/chaos/soak.py "$@"
