#!/usr/bin/env bash
# RTMP ingest benchmark: the same ffmpeg publishers (a 2 Mbit/s 640x360
# H.264 + AAC clip, -re -c copy, looped) pushed to Sharecast's RTMP ingest
# (docs/publishing.md: journal, recording, live relay) and to nginx-rtmp
# (Debian's libnginx-mod-rtmp, recording on), one after the other in the
# same run. Prints, per publisher count: ingested Mbit/s, server CPU and CPU
# seconds per ingested Mbit over the steady part of each run.
#
# Prints numbers, asserts nothing. Env: SESSIONS="10 25" SECONDS_PER_RUN=20
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS="${SESSIONS:-10 25}"
SECS="${SECONDS_PER_RUN:-20}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

source bench/lib/nginx-rtmp.sh
nginx_rtmp_install

cargo build --release --bin sharecast 2>&1 | tail -1
BIN=target/release/sharecast

source bench/lib/clip.sh
bench_clip
echo "clip: $CLIP_MBPS Mbit/s, 10 s, looped"

WARM=3
[ "$SECS" -ge $((WARM + 4)) ] || { echo "SECONDS_PER_RUN must be at least $((WARM + 4))" >&2; exit 2; }
WINDOW=$((SECS - WARM - 1))

source bench/lib/measure.sh
sharecast_rtmp() { echo "flv rtmp://127.0.0.1:21936/live/$1"; }
nginx_rtmp() { echo "flv rtmp://127.0.0.1:21935/live/$1"; }

# Sharecast: RTMP ingest, passthrough recording (no 480p encode), the live
# relay on as always.
cat > "$WORK/sharecast.toml" <<EOF
data_dir = "$WORK/data"
[ingest]
listen = "127.0.0.1:24433"
rtmp_listen = "127.0.0.1:21936"
max_sessions_per_device = 100000
[http]
listen = "127.0.0.1:28080"
[live]
rtsp_port = 28554
[transcoder]
renditions = []
EOF
"$BIN" device add bench --config "$WORK/sharecast.toml" >/dev/null 2>&1
max=$(for n in $SESSIONS; do echo "$n"; done | sort -n | tail -1)
for _ in $(seq "$max"); do
  "$BIN" device add-key bench --config "$WORK/sharecast.toml" 2>/dev/null
done > "$WORK/keys"

printf '\nSharecast RTMP ingest (journal, recording, live relay), ffmpeg -re -c copy, CPU over the steady window:\n'
header
for n in $SESSIONS; do
  RUST_LOG=warn "$BIN" serve --config "$WORK/sharecast.toml" >"$WORK/serve.out" 2>"$WORK/serve.log" &
  SPID=$!
  for _ in $(seq 100); do [ -s "$WORK/data/server.json" ] && break; sleep 0.1; done
  read -r t0 t1 < <(publish_and_measure "$n" sharecast_rtmp "$WORK/keys" "$SPID")
  sleep 2
  kill -INT $SPID 2>/dev/null || true; wait $SPID 2>/dev/null || true
  rm -f "$WORK/data/server.json"
  # Ingested bytes: what the journals hold (frames and their small
  # headers; close enough at these frame sizes).
  bytes=$(du -cb "$WORK"/data/sessions/*/journal 2>/dev/null | tail -1 | cut -f1)
  rm -rf "$WORK"/data/sessions
  row "$n" "${bytes:-0}" "$t0" "$t1"
done

NGX="$WORK/nginx"
chmod 755 "$WORK"
nginx_rtmp_config "$NGX" 21935
seq "$max" | sed 's/^/s/' > "$WORK/names"
printf '\nnginx-rtmp (recording on), the same publishers, the same window:\n'
header
for n in $SESSIONS; do
  rm -f "$NGX"/rec/*
  nginx -p "$NGX" -c "$NGX/nginx.conf" 2>/dev/null &
  NPID=$!
  sleep 1
  WPID=$( (pgrep -P $NPID || true) | head -1); WPID=${WPID:-$NPID}
  read -r t0 t1 < <(publish_and_measure "$n" nginx_rtmp "$WORK/names" "$NPID" "$WPID")
  bytes=$( (du -cb "$NGX"/rec/*.flv 2>/dev/null || echo 0) | tail -1 | cut -f1)
  kill $NPID 2>/dev/null || true; wait $NPID 2>/dev/null || true
  row "$n" "$bytes" "$t0" "$t1"
done
