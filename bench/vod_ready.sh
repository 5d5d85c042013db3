#!/usr/bin/env bash
# VOD-ready latency end to end, as a phone sees it: the real `sharecast serve`
# and `sharecast push --realtime` over QUIC on loopback. Prints, per run, the
# wall time from the push's last frame (`last_frame_unix_ms`, printed by push
# when it hands its last frame to the SDK) to the first HTTP 200 on the VOD
# URL (HEAD requests by curl: every 100 ms while recording, back to back after
# the last frame, so the figure is late by at most one curl round trip, a few
# ms), and push's own `ready_after_last_frame_ms` (last frame to the
# attributes received). Asserts nothing.
#
# Release build unless SHARECAST_BIN names a binary. RUNS (default 5) pushes
# of the 3 s demo clip, then LONG_RUNS (default 1) of a LONG_S-second
# (default 60) stream copy of it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
if [ -z "${SHARECAST_BIN:-}" ]; then
  cargo build --release -q --bin sharecast
  SHARECAST_BIN="$CARGO_TARGET_DIR/release/sharecast"
fi
RUNS="${RUNS:-5}"
LONG_RUNS="${LONG_RUNS:-1}"
LONG_S="${LONG_S:-60}"
bash fixtures/generate.sh >/dev/null
clip="$PWD/fixtures/media/h264_aac_640x360.mp4"

work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

long="$work/long.mp4"
ffmpeg -v error -stream_loop $(((LONG_S + 2) / 3 - 1)) -i "$clip" -c copy -y "$long"

"$SHARECAST_BIN" serve --data-dir "$work/data" --ingest-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --rtsp-port 0 >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 600); do [ -s "$work/data/server.json" ] && break; sleep 0.1; done
field() { sed -n "s/.*\"$1\": \"\\([^\"]*\\)\".*/\\1/p" "$work/data/server.json"; }
ingest=$(field ingest); http=$(field http); pin=$(field fingerprint)
# The demo device's token, printed once at the first start.
token=$(sed -n 's/^Demo device token (shown once; stored hashed): //p' "$work/serve.out")
[ -n "$token" ] || { echo "vod_ready: the server did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }

# run NAME INPUT: one real-time push; prints one result line.
run() {
  local name=$1 input=$2 out="$work/push.out" session="" code t200 last
  : >"$out"
  "$SHARECAST_BIN" push --server "$ingest" --token "$token" --pin "$pin" \
    --input "$input" --realtime >"$out" 2>"$work/push.err" &
  local push_pid=$!
  until session=$(sed -n 's/^session //p' "$out") && [ -n "$session" ]; do
    kill -0 "$push_pid" 2>/dev/null || { cat "$work/push.err" >&2; return 1; }
    sleep 0.01
  done
  local url="$http/vod/$session/source.mp4"
  while :; do
    code=$(curl -s -o /dev/null -I -w '%{http_code}' "$url")
    if [ "$code" = 200 ]; then
      t200=$(date +%s%3N)
      break
    fi
    [ "$code" = 409 ] || { echo "vod_ready: $url answered $code" >&2; return 1; }
    grep -q '^last_frame_unix_ms ' "$out" || sleep 0.1
  done
  wait "$push_pid" || { cat "$work/push.err" >&2; return 1; }
  last=$(sed -n 's/^last_frame_unix_ms //p' "$out")
  echo "$name push_last_frame_to_vod_http_200_ms $((t200 - last)) ready_after_last_frame_ms $(sed -n 's/^ready_after_last_frame_ms //p' "$out")"
}

echo "== VOD ready: last frame of a real-time push to HTTP 200 on /vod/<id>/source.mp4 ($SHARECAST_BIN)"
for i in $(seq "$RUNS"); do run "3s#$i" "$clip"; done
for i in $(seq "$LONG_RUNS"); do run "${LONG_S}s#$i" "$long"; done
