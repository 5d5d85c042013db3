# Shared by the publisher benchmarks (bench/rtmp.sh, bench/srt.sh): ffmpeg
# publishers of the clip and the CPU they cost a server. Source it after
# bench/lib/clip.sh, with SECS, WARM and WINDOW set.

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
