#!/usr/bin/env bash
# RTMP ingest benchmark: the same ffmpeg publishers (a 2 Mbit/s 640x360
# H.264 + AAC clip, -re -c copy, looped) pushed to Sharecast's RTMP ingest
# (docs/publishing.md: journal, recording, live relay) and to nginx-rtmp
# (Debian's libnginx-mod-rtmp, recording on), one after the other in the
# same run. Prints, per publisher count: ingested Mbit/s, server CPU and CPU
# seconds per ingested Mbit over the steady part of each run.
#
# Prints numbers, asserts nothing. Env: SESSIONS="10 25" SECONDS_PER_RUN=20;
# BIN=path/to/sharecast uses that binary instead of building a release one.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/lib/measure.sh

source bench/lib/nginx-rtmp.sh
nginx_rtmp_install

bench_prepare
sharecast_rtmp() { echo "flv rtmp://127.0.0.1:21936/live/$1"; }
nginx_rtmp() { echo "flv rtmp://127.0.0.1:21935/live/$1"; }

# Sharecast: RTMP ingest, passthrough recording (no 480p encode), the live
# relay on as always.
sharecast_setup
sharecast_table "Sharecast RTMP ingest (journal, recording, live relay), ffmpeg -re -c copy, CPU over the steady window:" sharecast_rtmp

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
