#!/usr/bin/env bash
# Capture-to-display delay of live HLS in headless Chromium on loopback,
# low-latency HLS against plain HLS: a `sharecast push --input testsrc`
# (640x360, 30 fps, 1 s GOP) into a local server, and the player page
# (/watch/{id}) in the system Chromium playing it for SECS seconds, once with
# hls.js in low-latency mode (parts, blocking reload, preload hints) and once
# with `?ll=0` (full segments only). The page measures each frame on screen
# as Date.now() minus its capture wall clock (hls.js `playingDate`, from
# #EXT-X-PROGRAM-DATE-TIME); start-up is not counted.
# Prints p50/p99 per mode, asserts nothing.
# Env: PROFILE=debug|release (debug), SECS=20, RUNS=1 (runs per mode).
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-debug}"
SECS="${SECS:-20}"
RUNS="${RUNS:-1}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

flag=""; [ "$PROFILE" = release ] && flag="--release"
CARGO_INCREMENTAL=0 cargo build $flag --bin sharecast 2>&1 | tail -1
BIN="$TARGET/$PROFILE/sharecast"
[ -f web/node_modules/hls.js/dist/hls.min.js ] || npm ci --prefix web --no-audit --no-fund --loglevel=error
[ -d web/share/node_modules/playwright-core ] || npm ci --prefix web/share --no-audit --no-fund --loglevel=error

RUST_LOG=warn "$BIN" serve --data-dir "$WORK/data" --ingest-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --rtsp-port 0 >"$WORK/server.out" 2>"$WORK/server.log" &
for _ in $(seq 100); do [ -s "$WORK/data/server.json" ] && break; sleep 0.1; done
json() { python3 -c "import json,sys; print(json.load(open('$WORK/data/server.json'))['$1'])"; }
# The demo device's token, printed once at the first start.
TOKEN=$(sed -n 's/^Demo device token (shown once; stored hashed): //p' "$WORK/server.out")
HTTP="$(json http)"

# One push for every run: each run needs about SECS + 10 s (browser start).
RUST_LOG=warn "$BIN" push --server "$(json ingest)" --token "$TOKEN" \
  --pin "$(json fingerprint)" --input testsrc --duration $(((SECS + 15) * RUNS * 2 + 5)) \
  >"$WORK/push.out" 2>&1 &
for _ in $(seq 100); do grep -q '^session ' "$WORK/push.out" 2>/dev/null && break; sleep 0.1; done
SID="$(awk '/^session /{print $2; exit}' "$WORK/push.out")"
# The push's RTSP URL carries the playback token.
RTSP_URL="$(awk '/^live rtsp:/{print $2; exit}' "$WORK/push.out")"
QUERY="${RTSP_URL#*\?}"; [ "$QUERY" = "$RTSP_URL" ] && QUERY="" || QUERY="$QUERY&"
sleep 3
echo "session $SID, $SECS s per run, $RUNS run(s) per mode, $PROFILE build"

# p50/p99 and figures of hls.js from web/share/live-viewer.mjs's report.
report() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = [json.loads(l) for l in open(path) if l.startswith('{"event":"measured"')][-1]
if "error" in r:
    print(f"{name}: failed: {r['error']}"); sys.exit(0)
d = sorted(r["delays"])
if not d:
    print(f"{name}: no delay measured"); sys.exit(0)
pick = lambda q: d[min(len(d) - 1, int(q * len(d)))]
l = r["later"]
print(f"{name:7} p50 {pick(0.5):5.0f} ms  p99 {pick(0.99):5.0f} ms  ({len(d)} samples; "
      f"parts loaded {l['parts_loaded']}, hls.js latency {l['latency']}, target {l['target_latency']})")
EOF
}

for run in $(seq "$RUNS"); do
  for mode in 1 0; do
    name=$([ "$mode" = 1 ] && echo LL-HLS || echo HLS)
    node web/share/live-viewer.mjs measure "$HTTP/watch/$SID?${QUERY}ll=$mode" "$SECS" \
      >"$WORK/measure.out" 2>"$WORK/measure.err" || true
    report "$name" "$WORK/measure.out"
  done
done
