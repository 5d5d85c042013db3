# Shared by the publisher benchmarks (bench/rtmp.sh, bench/srt.sh): ffmpeg
# publishers of the clip and the CPU they cost a server. Source it from the
# repository's root, then call bench_prepare. Env: SESSIONS (publisher
# counts, default "10 25"), SECONDS_PER_RUN (default 20), BIN (a sharecast
# binary to use instead of a release build).

SESSIONS="${SESSIONS:-10 25}"
SECS="${SECONDS_PER_RUN:-20}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

source bench/lib/clip.sh

# bench_prepare: the server binary ($BIN, else a release build), the clip
# ($CLIP), and the steady window of each run: from WARM seconds after the
# publishers start to one second before they stop.
bench_prepare() {
  if [ -z "${BIN:-}" ]; then
    cargo build --release --bin sharecast 2>&1 | tail -1
    BIN=target/release/sharecast
  fi
  bench_clip
  echo "clip: $CLIP_MBPS Mbit/s, 10 s, looped; $BIN"
  WARM=3
  [ "$SECS" -ge $((WARM + 4)) ] || { echo "SECONDS_PER_RUN must be at least $((WARM + 4))" >&2; exit 2; }
  WINDOW=$((SECS - WARM - 1))
}

# publish_and_measure N TARGET KEYS PID...: N ffmpeg publishers of $CLIP
# (-re -c copy, looped) for SECS seconds, one per line of the file KEYS;
# TARGET is a function that prints "FORMAT URL" for a key. Prints the CPU
# ticks of the processes PID... at the start and the end of the steady
# window.
publish_and_measure() {
  local n=$1 target=$2 keys_file=$3; shift 3
  local pids=() i=0 t0=0 t1=0 p fmt url
  while read -r key && [ $i -lt "$n" ]; do
    read -r fmt url < <("$target" "$key")
    timeout $((SECS + 30)) ffmpeg -v error -re -stream_loop -1 -t "$SECS" -i "$CLIP" -c copy -f "$fmt" "$url" </dev/null &
    pids+=($!); i=$((i + 1))
  done < "$keys_file"
  sleep "$WARM"
  for p in "$@"; do t0=$((t0 + $(cpu_ticks "$p"))); done
  sleep "$WINDOW"
  for p in "$@"; do t1=$((t1 + $(cpu_ticks "$p"))); done
  wait "${pids[@]}" 2>/dev/null || true
  echo "$t0 $t1"
}

# row N BYTES T0 T1: publishers, ingested Mbit/s, CPU % and CPU s per Mbit.
row() {
  python3 -c "
n=$1; b=$2; secs=$SECS; window=$WINDOW; cpu=($4-$3)/$HZ
mbit=b*8/1e6/secs
print(f'{n:<9} {mbit:<10.1f} {100*cpu/window:<9.0f} {cpu/(mbit*window) if mbit else 0:<12.4f}')"
}

# The table's header.
header() { printf '%-9s %-10s %-9s %-12s\n' publishers "Mbit/s" "cpu %" "cpu s/Mbit"; }

# sharecast_setup: $WORK/sharecast.toml (RTMP ingest on 21936, SRT on
# 28890, passthrough recording without renditions, the live relay on as
# always), a device and as many publishing keys as the largest of
# $SESSIONS (in $WORK/keys; their number in $max).
sharecast_setup() {
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
}

# sharecast_table TITLE TARGET: a fresh `sharecast serve` per publisher
# count of $SESSIONS, the publishers sent by TARGET (see
# publish_and_measure); prints TITLE and a row per count. Ingested bytes
# are what the journals hold (frames and their small headers).
sharecast_table() {
  local title=$1 target=$2 n spid t0 t1 bytes
  printf '\n%s\n' "$title"
  header
  for n in $SESSIONS; do
    RUST_LOG=warn "$BIN" serve --config "$WORK/sharecast.toml" >"$WORK/serve.out" 2>"$WORK/serve.log" &
    spid=$!
    for _ in $(seq 100); do [ -s "$WORK/data/server.json" ] && break; sleep 0.1; done
    read -r t0 t1 < <(publish_and_measure "$n" "$target" "$WORK/keys" "$spid")
    sleep 3
    kill -INT $spid 2>/dev/null || true; wait $spid 2>/dev/null || true
    rm -f "$WORK/data/server.json"
    bytes=$(du -cb "$WORK"/data/sessions/*/journal 2>/dev/null | tail -1 | cut -f1)
    rm -rf "$WORK"/data/sessions
    row "$n" "${bytes:-0}" "$t0" "$t1"
  done
}
