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

source bench/lib/measure.sh
bench_prepare
rtmp() { echo "flv rtmp://127.0.0.1:21936/live/$1"; }
srt() { echo "mpegts srt://127.0.0.1:28890?mode=caller&streamid=$1"; }

sharecast_setup
for protocol in rtmp srt; do
  sharecast_table "Sharecast $protocol ingest (journal, recording, live relay), ffmpeg -re -c copy, CPU over the steady window:" "$protocol"
done
