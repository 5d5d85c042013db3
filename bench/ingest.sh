#!/usr/bin/env bash
# Ingest benchmark: concurrent phones on loopback, each pushing a 2 Mbit/s clip
# in real time with passthrough recording. Prints, per session count: ingest
# Mbit/s, p50/p99 acknowledgement latency of the steady state (and p99 of the
# whole run, start-up included), sessions behind, server CPU and CPU
# seconds per ingested Mbit over the steady part of the run, the load
# generator's CPU (it shares the machine), and the CPU per session spent
# finalising VOD files after the phones stop; then the same clips pushed by
# ffmpeg to nginx-rtmp (Debian's libnginx-mod-rtmp, recording on) for the CPU
# ratio; the bare QUIC transport (examples/quic_floor.rs) receiving the same
# bitrate, to tell the transport's share from Sharecast's; and where the
# server's CPU goes, by thread name and (with perf) by thread and function.
#
# Prints numbers, asserts nothing. Env: SESSIONS="10 25 50" SECONDS_PER_RUN=20
# COMMIT_DELAY_MS=5 JOURNAL_SYNC=file
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS="${SESSIONS:-10 25 50 100}"
# The server's default journal commit delay (ingest.journal_commit_delay_ms);
# COMMIT_DELAY_MS overrides it for an experiment.
DEFAULT_COMMIT_DELAY_MS=$(awk -F' = ' '/^journal_commit_delay_ms/ {print $2}' docs/sharecast.example.toml)
SECS="${SECONDS_PER_RUN:-20}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

source bench/lib/nginx-rtmp.sh
nginx_rtmp_install

cargo build --release --bin sharecast --example ingest_load --example quic_floor 2>&1 | tail -1
BIN=target/release/sharecast
LOAD=target/release/examples/ingest_load
FLOOR=target/release/examples/quic_floor

source bench/lib/clip.sh
bench_clip
echo "clip: $CLIP_MBPS Mbit/s, 10 s, looped with continuous timestamps"

cat > "$WORK/sharecast.toml" <<EOF
data_dir = "$WORK/data"
[ingest]
listen = "127.0.0.1:24433"
max_sessions_per_device = 100000
journal_commit_delay_ms = ${COMMIT_DELAY_MS:-$DEFAULT_COMMIT_DELAY_MS}
journal_sync = "${JOURNAL_SYNC:-filesystem}"
[http]
listen = "127.0.0.1:28080"
[live]
rtsp_port = 28554
[transcoder]
# Passthrough recording only (no 480p encode) for this benchmark.
renditions = []
EOF

# CPU is counted over the steady part of each run: from WARM seconds after
# the phones start to one second before they stop (the same window for
# nginx-rtmp). Finalising the VOD files after the phones stop (the muxer's
# last index, compaction, probing, poster) is reported on its own, per
# session: it does not grow with the bitrate.
WARM=3
[ "$SECS" -ge $((WARM + 4)) ] || { echo "SECONDS_PER_RUN must be at least $((WARM + 4))" >&2; exit 2; }
WINDOW=$((SECS - WARM - 1))
printf '\nCPU over the steady %s s of each run (server: all its threads; load: the phones'"'"' side, same machine)\n' "$WINDOW"
printf 'ack p50/p99: frames sent after each phone'"'"'s first %s s; "p99 start": the whole run, start-up included\n' "$WARM"
printf '%-9s %-10s %-10s %-10s %-10s %-7s %-7s %-11s %-12s %-9s %-14s\n' sessions "Mbit/s" "ack p50" "ack p99" "p99 start" behind failed "server cpu%" "cpu s/Mbit" "load cpu%" "finalise s/ses"
LAST_N=$(echo $SESSIONS | awk '{print $NF}')
# The profile comes from one more run at the largest count, so that perf's
# own cost does not show in the measured rows.
RUNS="$SESSIONS"
command -v perf >/dev/null && RUNS="$RUNS profile"
for run in $RUNS; do
  n=$run; [ "$run" = profile ] && n=$LAST_N
  rm -rf "$WORK/data"
  "$BIN" serve --config "$WORK/sharecast.toml" >"$WORK/server.out" 2>"$WORK/server.log" &
  SPID=$!
  for _ in $(seq 100); do [ -f "$WORK/data/server.json" ] && break; sleep 0.1; done
  # The demo device's token, printed once at the first start.
  TOKEN=$(sed -n 's/^Demo device token (shown once; stored hashed): //p' "$WORK/server.out")
  PIN=$(python3 -c "import json;print(json.load(open('$WORK/data/server.json'))['fingerprint'])")
  "$LOAD" --server 127.0.0.1:24433 --token "$TOKEN" --pin "$PIN" --input "$CLIP" --sessions "$n" --seconds "$SECS" --warm "$WARM" \
    >"$WORK/load.json" 2>"$WORK/load.log" &
  LPID=$!
  sleep "$WARM"
  t0=$(cpu_ticks $SPID); l0=$(cpu_ticks $LPID)
  # A sampled profile of the server (perf, cpu-clock) over the window of the
  # largest run.
  PERF_PID=""
  if [ "$run" = profile ]; then
    perf record -q -e cpu-clock -F 499 -p "$SPID" -o "$WORK/perf.data" -- sleep "$WINDOW" >/dev/null 2>&1 &
    PERF_PID=$!
  fi
  sleep "$WINDOW"
  t1=$(cpu_ticks $SPID); l1=$(cpu_ticks $LPID)
  # Where the time goes: CPU by thread name (threads alive now, whole run),
  # top 6.
  profile=$(for t in /proc/$SPID/task/*; do
      printf '%s %s\n' "$(tr ' ' '_' < "$t/comm" 2>/dev/null)" "$(awk '{print $14+$15}' "$t/stat" 2>/dev/null)"
    done 2>/dev/null | awk '{sub(/[-:]?[0-9]+(:|$)/,":",$1); sub(/:$/,"",$1); s[$1]+=$2; c[$1]++} END {for (k in s) print s[k], k "(" c[k] ")"}' | sort -rn | head -6 \
    | awk -v hz="$HZ" '{printf "%s=%.1fs ", $2, $1/hz}')
  wait "$LPID" || true
  t2=$(cpu_ticks $SPID)
  [ -n "$PERF_PID" ] && wait "$PERF_PID" 2>/dev/null || true
  journal=$(curl -s -H "Authorization: Bearer $(cat "$WORK/data/admin-token")" http://127.0.0.1:28080/metrics | awk -v secs="$SECS" '
    /^sharecast_ingest_journal_commits_total / {c=$2}
    /^sharecast_ingest_journal_sync_microseconds_total / {us=$2}
    /^sharecast_ingest_journal_round_max_microseconds / {mx=$2}
    END {if (c) printf "%.0f rounds/s, mean %.1f ms, longest %.1f ms", c/secs, us/c/1000, mx/1000}')
  kill -INT $SPID; wait $SPID 2>/dev/null || true
  [ "$run" = profile ] && continue
  python3 - "$(cat "$WORK/load.json" 2>/dev/null || echo '{}')" "$t0" "$t1" "$t2" "$l0" "$l1" "$HZ" "$WINDOW" "$n" "$profile" "$journal" <<'PY'
import json, sys
try:
    o = json.loads(sys.argv[1] or "{}")
except ValueError:
    o = {}
t0, t1, t2, l0, l1, hz, window, n = (int(x) for x in sys.argv[2:10])
cpu = (t1 - t0) / hz
load = (l1 - l0) / hz
mbit = o.get("ingest_mbit_s", 0.0)
# After the window: one more second of ingest, then finalisation.
fin = max(0.0, (t2 - t1) / hz - cpu / window) / n
print(f"{n:<9} {mbit:<10.1f} {o.get('ack_p50_ms',0):<10.1f} {o.get('ack_p99_ms',0):<10.1f} {o.get('ack_p99_all_ms',0):<10.1f} {o.get('behind','?'):<7} {o.get('failed','?'):<7} "
      f"{100*cpu/window:<11.0f} {cpu/(mbit*window) if mbit else 0:<12.4f} {100*load/window:<9.0f} {fin:<14.3f}")
if o.get("first_error"):
    print("          first error:", o["first_error"][:200])
print("          server CPU by thread:", sys.argv[10])
print("          journal commit rounds:", sys.argv[11])
PY
done

if [ -s "$WORK/perf.data" ]; then
  printf '\nwhere the server time goes at %s sessions (a separate run with perf attached; cpu-clock samples, top symbols):\n' "$LAST_N"
  # (head closes the pipe early: not a failure of the benchmark.)
  { perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | cut -c1-120 | head -25; } || true
  printf '\nby thread:\n'
  { perf report -i "$WORK/perf.data" --stdio --no-children --sort comm 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | cut -c1-80 | head -8; } || true
  printf '\nby library:\n'
  { perf report -i "$WORK/perf.data" --stdio --no-children --sort dso 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | cut -c1-80 | head -10; } || true
fi

# nginx-rtmp, same clips, recording on.
NGX="$WORK/nginx"
chmod 755 "$WORK"
nginx_rtmp_config "$NGX" 21935
printf '\nnginx-rtmp (recording on), same clip via ffmpeg -re -c copy, CPU over the same steady window:\n'
printf '%-9s %-10s %-9s %-12s\n' sessions "Mbit/s" "cpu %" "cpu s/Mbit"
for n in $SESSIONS; do
  rm -f "$NGX"/rec/*
  nginx -p "$NGX" -c "$NGX/nginx.conf" 2>/dev/null &
  NPID=$!
  sleep 1
  WPID=$( (pgrep -P $NPID || true) | head -1); WPID=${WPID:-$NPID}
  pids=()
  for i in $(seq "$n"); do
    timeout $((SECS + 30)) ffmpeg -v error -re -stream_loop -1 -t "$SECS" -i "$CLIP" -c copy -f flv "rtmp://127.0.0.1:21935/live/s$i" </dev/null &
    pids+=($!)
  done
  sleep "$WARM"
  t0=$(( $(cpu_ticks $NPID) + $(cpu_ticks $WPID) ))
  sleep "$WINDOW"
  t1=$(( $(cpu_ticks $NPID) + $(cpu_ticks $WPID) ))
  wait "${pids[@]}" 2>/dev/null || true
  bytes=$( (du -cb "$NGX"/rec/*.flv 2>/dev/null || echo 0) | tail -1 | cut -f1)
  kill $NPID 2>/dev/null || true; wait $NPID 2>/dev/null || true
  python3 -c "
b=$bytes; secs=$SECS; window=$WINDOW; cpu=($t1-$t0)/$HZ
mbit=b*8/1e6/secs
print(f'{$n:<9} {mbit:<10.1f} {100*cpu/window:<9.0f} {cpu/(mbit*window) if mbit else 0:<12.4f}')"
done

# The transport floor: the same QUIC stack and windows receiving the same
# bitrate per phone and throwing it away (no journal, ACKs or recording), so
# the ratio to nginx-rtmp can be split into "QUIC + TLS" and "Sharecast".
printf '\nQUIC transport floor (examples/quic_floor.rs: quinn + TLS 1.3, one stream per phone, 30 writes/s, bytes discarded), same window:\n'
printf '%-9s %-10s %-9s %-12s\n' sessions "Mbit/s" "cpu %" "cpu s/Mbit"
for n in $SESSIONS; do
  rm -f "$WORK/floor.der"
  "$FLOOR" serve --listen 127.0.0.1:24501 --cert-out "$WORK/floor.der" 2>"$WORK/floor.log" &
  FPID=$!
  for _ in $(seq 50); do [ -s "$WORK/floor.der" ] && break; sleep 0.1; done
  "$FLOOR" push --server 127.0.0.1:24501 --cert "$WORK/floor.der" --sessions "$n" --seconds "$SECS" \
    --kbit "$(python3 -c "print(int($CLIP_MBPS*1000))")" >"$WORK/floor.json" 2>>"$WORK/floor.log" &
  PPID_=$!
  sleep "$WARM"
  t0=$(cpu_ticks $FPID)
  sleep "$WINDOW"
  t1=$(cpu_ticks $FPID)
  wait "$PPID_" || true
  kill $FPID 2>/dev/null || true; wait $FPID 2>/dev/null || true
  python3 - "$(cat "$WORK/floor.json" 2>/dev/null || echo '{}')" "$t0" "$t1" "$HZ" "$WINDOW" "$n" <<'PY'
import json, sys
try:
    o = json.loads(sys.argv[1] or "{}")
except ValueError:
    o = {}
t0, t1, hz, window, n = (int(x) for x in sys.argv[2:7])
cpu = (t1 - t0) / hz
mbit = o.get("ingest_mbit_s", 0.0)
print(f"{n:<9} {mbit:<10.1f} {100*cpu/window:<9.0f} {cpu/(mbit*window) if mbit else 0:<12.4f}")
PY
done
