#!/usr/bin/env bash
# The phone SDK (client-sdk, client-sdk/ffi): prints numbers, asserts
# nothing. Release builds. Against a real `sharecast serve` on loopback:
#
# 1. SDK CPU per sent Mbit/s, the Kotlin binding (JVM + JNA, the test
#    program's `bench` mode, sendFrameBlocking) against the Rust API
#    (examples/sdk_bench.rs `rust`, Uploader::send): the same MediaCodec-shaped
#    frames of a LONG_S-second (default 30) 2 Mbit/s-class clip, pushed as
#    fast as the SDK takes them, ROUNDS (default 3) times after one warm-up
#    round, REPS (default 3) repetitions each. CPU is the process's
#    (utime + stime): for the JVM it includes its own threads (GC, JIT).
# 2. Memory and spool bytes during a BLACKOUT_S (default 60) blackout at
#    2 Mbit/s (the server stopped with SIGSTOP), every second.
# 3. Time from Uploader::resume_pending to the first resent frame, after
#    a RESUME_BLACKOUT_S (default 5) blackout.
#
# perf's instruction counter is not available on these machines and
# callgrind cannot follow the JVM, so CPU seconds are given with their
# spread over REPS repetitions.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
LONG_S="${LONG_S:-30}"
ROUNDS="${ROUNDS:-3}"
REPS="${REPS:-3}"
BLACKOUT_S="${BLACKOUT_S:-60}"
bash scripts/setup.sh >/dev/null
bash fixtures/generate.sh >/dev/null
cargo build --release -q --bin sharecast --example sdk_bench
CARGO_PROFILE=release bash scripts/sdk-bindings.sh target/sharecast-bindings-release >/dev/null
bin="$CARGO_TARGET_DIR/release/sharecast"
helper="$CARGO_TARGET_DIR/release/examples/sdk_bench"
kc=client-sdk/ffi/node_modules/kotlin-compiler
cp_jars="$kc/lib/kotlin-stdlib.jar:$kc/lib/kotlinx-coroutines-core-jvm.jar:/usr/share/java/jna.jar"

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -CONT "$server_pid" 2>/dev/null || true
    kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The Kotlin test program, compiled against the release bindings.
"$kc/bin/kotlinc" target/sharecast-bindings-release/kotlin/net/sharecast/sdk/ffi/sharecast_sdk.kt \
  client-sdk/ffi/kotlin/net/sharecast/sdk/Sharecast.kt client-sdk/ffi/kotlin-test/SdkTestProgram.kt \
  -cp "$cp_jars" -nowarn -jvm-target 17 -d "$work/sdk.jar" 2>/dev/null
kotlin() {
  java -Djna.library.path=target/sharecast-bindings-release/lib -XX:+UseSerialGC \
    -cp "$work/sdk.jar:$cp_jars" SdkTestProgramKt "$@"
}

clip="$PWD/fixtures/media/h264_aac_640x360.mp4"
ffmpeg -v error -stream_loop $(((LONG_S + 2) / 3 - 1)) -i "$clip" -c copy -y "$work/long.mp4"
mkdir -p "$work/frames"
"$helper" dump "$work/long.mp4" "$work/frames" | sed 's/^/clip: /'

"$bin" serve --data-dir "$work/data" --ingest-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --rtsp-port 0 >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 100); do [ -f "$work/data/server.json" ] && break; sleep 0.1; done
field() { python3 -c "import json,sys; print(json.load(open('$work/data/server.json'))['$1'])"; }
ingest=$(field ingest); token=$(field demo_token); pin=$(field fingerprint)

echo "== 1. SDK CPU per sent Mbit/s (${LONG_S} s clip x ${ROUNDS} rounds, ${REPS} repetitions)"
per_mbit() { awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  printf "%s bytes=%s wall_s=%s cpu_s=%s cpu_ms_per_mbit=%.2f\n", label, v["bytes"], v["wall_s"], v["cpu_s"], v["cpu_s"] * 1000 / (v["bytes"] * 8 / 1e6) }' label="$1"; }
for rep in $(seq "$REPS"); do
  "$helper" rust "$work/frames" "$ingest" "$token" "$pin" "$ROUNDS" | grep '^bench' | per_mbit "rust   rep=$rep"
  kotlin bench "$work/frames" "$ingest" "$token" "$pin" "$ROUNDS" 2>/dev/null | grep '^bench' | per_mbit "kotlin rep=$rep"
done

echo "== 2. ${BLACKOUT_S} s blackout at 2 Mbit/s with a spool (server stopped)"
spool="$work/spool"
coproc BLACK { "$helper" blackout "$ingest" "$token" "$pin" "$BLACKOUT_S" 2000000 "$spool" 2>"$work/blackout.err"; }
read -r line <&"${BLACK[0]}"; echo "$line"
read -r line <&"${BLACK[0]}"
kill -STOP "$server_pid"
while read -r line <&"${BLACK[0]}"; do
  case "$line" in
    blackout*) echo "$line" ;;
  esac
done
wait "$BLACK_PID" || true
kill -CONT "$server_pid"

echo "== 3. resume_pending to the first resent frame (after a ${RESUME_BLACKOUT_S:=5} s blackout)"
# A short blackout: the server finalises a session whose phone stayed away
# longer than ingest.resume_timeout_secs (60 s), counted from the last
# packet, so the 60 s run above cannot be resumed.
spool2="$work/spool2"
coproc BLACK2 { "$helper" blackout "$ingest" "$token" "$pin" "$RESUME_BLACKOUT_S" 2000000 "$spool2" 2>"$work/blackout2.err"; }
read -r line <&"${BLACK2[0]}"
read -r line <&"${BLACK2[0]}"
kill -STOP "$server_pid"
while read -r line <&"${BLACK2[0]}"; do
  case "$line" in
    "blackout done"*) echo "$line" ;;
  esac
done
wait "$BLACK2_PID" || true
kill -CONT "$server_pid"
"$helper" resume "$ingest" "$token" "$pin" "$spool2"
echo "machine: $(nproc) cores, $(uname -srm); $(date -u +%Y-%m-%d)"
