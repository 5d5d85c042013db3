#!/usr/bin/env bash
# Live benchmark on loopback: a `sharecast push --input testsrc` (640x360,
# 30 fps, 1 s GOP) into a local server, then
#   - RTSP glass-to-glass p50/p99 (capture clock SEI → received AU),
#   - HLS segment availability and player glass-to-glass p50/p99 (from
#     #EXT-X-PROGRAM-DATE-TIME; the in-browser figure is printed by
#     tests/e2e_live.rs),
#   - RTSP viewers per stream before frames drop,
#   - HLS players per stream before a segment arrives later than its duration.
# Prints numbers, asserts nothing. Env: PROFILE=release|debug, SECS=10,
# MAX_VIEWERS=32, MAX_HLS_VIEWERS=256.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-release}"
SECS="${SECS:-10}"
MAX_VIEWERS="${MAX_VIEWERS:-32}"
MAX_HLS_VIEWERS="${MAX_HLS_VIEWERS:-256}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

flag=""; [ "$PROFILE" = release ] && flag="--release"
cargo build $flag --bin sharecast 2>&1 | tail -1
cargo build $flag -p sharecast-live-relay --example live_bench 2>&1 | tail -1
BIN="$TARGET/$PROFILE/sharecast"
BENCH="$TARGET/$PROFILE/examples/live_bench"

RUST_LOG=warn "$BIN" serve --data-dir "$WORK/data" --ingest-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --rtsp-port 0 >"$WORK/server.out" 2>"$WORK/server.log" &
for _ in $(seq 100); do [ -s "$WORK/data/server.json" ] && break; sleep 0.1; done
json() { python3 -c "import json,sys; print(json.load(open('$WORK/data/server.json'))['$1'])"; }
# The demo device's token, printed once at the first start.
TOKEN=$(sed -n 's/^Demo device token (shown once; stored hashed): //p' "$WORK/server.out")
HTTP="$(json http)"; RTSP_PORT="$(json rtsp_port)"

push() {
  RUST_LOG=warn "$BIN" push --server "$(json ingest)" --token "$TOKEN" \
    --pin "$(json fingerprint)" --input testsrc --duration "$1" >"$WORK/push.out" 2>&1 &
  for _ in $(seq 100); do grep -q '^session ' "$WORK/push.out" 2>/dev/null && break; sleep 0.1; done
  SID="$(awk '/^session /{print $2; exit}' "$WORK/push.out")"
  # The push's RTSP URL carries the playback token.
  RTSP_URL="$(awk '/^live rtsp:/{print $2; exit}' "$WORK/push.out")"
  QUERY="${RTSP_URL#*\?}"; [ "$QUERY" = "$RTSP_URL" ] && QUERY="" || QUERY="?$QUERY"
  sleep 2
}

# One push for everything: the delay runs, then 1, 2, 4, … RTSP viewers at
# 9 s each, then 1, 2, 4, … HLS players at 6 s each.
steps=1; n=1; while [ $((n * 2)) -le "$MAX_VIEWERS" ]; do n=$((n * 2)); steps=$((steps + 1)); done
hsteps=1; n=1; while [ $((n * 2)) -le "$MAX_HLS_VIEWERS" ]; do n=$((n * 2)); hsteps=$((hsteps + 1)); done
push $((SECS + 15 + steps * 9 + hsteps * 6))
echo "session $SID"
"$BENCH" rtsp-delay "rtsp://127.0.0.1:$RTSP_PORT/live/$SID$QUERY" "$SECS" &
DELAY_PID=$!
"$BENCH" hls-delay "$HTTP" "$SID$QUERY" "$SECS"
wait "$DELAY_PID" || true
"$BENCH" viewers "rtsp://127.0.0.1:$RTSP_PORT/live/$SID$QUERY" "$MAX_VIEWERS" 4
"$BENCH" hls-viewers "$HTTP" "$SID$QUERY" "$MAX_HLS_VIEWERS" 5
