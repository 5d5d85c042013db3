#!/usr/bin/env bash
# SRT ingest benchmark: the same ffmpeg publishers (a 2 Mbit/s 640x360
# H.264 + AAC clip, -re -c copy, looped) pushed to Sharecast's RTMP ingest
# (FLV) and to its SRT ingest (MPEG-TS over SRT), one after the other in
# the same run, into the same pipeline (journal, passthrough recording,
# live relay). Prints, per publisher count: ingested Mbit/s, server CPU and
# CPU seconds per ingested Mbit over the steady part of each run.
#
# Prints numbers, asserts nothing. Env: SESSIONS="10 25"
# SECONDS_PER_RUN=20; BIN=path/to/sharecast uses that binary instead of
# building a release one.
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS="${SESSIONS:-10 25}"
SECS="${SECONDS_PER_RUN:-20}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ -z "${BIN:-}" ]; then
  cargo build --release --bin sharecast 2>&1 | tail -1
  BIN=target/release/sharecast
fi

source bench/lib/clip.sh
bench_clip
echo "clip: $CLIP_MBPS Mbit/s, 10 s, looped; $BIN"

WARM=3
[ "$SECS" -ge $((WARM + 4)) ] || { echo "SECONDS_PER_RUN must be at least $((WARM + 4))" >&2; exit 2; }
WINDOW=$((SECS - WARM - 1))

source bench/lib/measure.sh
rtmp() { echo "flv rtmp://127.0.0.1:21936/live/$1"; }
srt() { echo "mpegts srt://127.0.0.1:28890?mode=caller&streamid=$1"; }

cat > "$WORK/sharecast.toml" <<EOF2
data_dir = "$WORK/data"
[ingest]
listen = "127.0.0.1:24433"
rtmp_listen = "127.0.0.1:21936"
srt_listen = "127.0.0.1:28890"
rejoin_window_secs = 1
max_sessions_per_device = 100000
[http]
listen = "127.0.0.1:28080"
[live]
rtsp_port = 28554
[transcoder]
renditions = []
EOF2
"$BIN" device add bench --config "$WORK/sharecast.toml" >/dev/null 2>&1
max=$(for n in $SESSIONS; do echo "$n"; done | sort -n | tail -1)
for _ in $(seq "$max"); do
  "$BIN" device add-key bench --config "$WORK/sharecast.toml" 2>/dev/null
done > "$WORK/keys"

for protocol in rtmp srt; do
  printf '\nSharecast %s ingest (journal, recording, live relay), ffmpeg -re -c copy, CPU over the steady window:\n' "$protocol"
  header
  for n in $SESSIONS; do
    RUST_LOG=warn "$BIN" serve --config "$WORK/sharecast.toml" >"$WORK/serve.out" 2>"$WORK/serve.log" &
    SPID=$!
    for _ in $(seq 100); do [ -s "$WORK/data/server.json" ] && break; sleep 0.1; done
    read -r t0 t1 < <(publish_and_measure "$n" "$protocol" "$WORK/keys" "$SPID")
    sleep 3
    kill -INT $SPID 2>/dev/null || true; wait $SPID 2>/dev/null || true
    rm -f "$WORK/data/server.json"
    # Ingested bytes: what the journals hold.
    bytes=$(du -cb "$WORK"/data/sessions/*/journal 2>/dev/null | tail -1 | cut -f1)
    rm -rf "$WORK"/data/sessions
    row "$n" "${bytes:-0}" "$t0" "$t1"
  done
done
