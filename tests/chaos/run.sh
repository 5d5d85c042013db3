#!/usr/bin/env bash
# The chaos suite (docs/reliability.md): real faults, real processes.
#
#   bash tests/chaos/run.sh [--short|--full] [CASE...]
#
# CASEs (default: all, in this order):
#   loss      20% of packets dropped each way for the whole push
#   blackout  every packet dropped in the middle of the push (12 s short,
#             30 s full), then the link back
#   rebind    NAT rebinding: mid-push the phone's packets leave from another
#             address and port (second address + SNAT rule swapped, its
#             conntrack entry deleted); QUIC migrates or the SDK resumes
#   uplink    a 1 Mbit/s uplink (tbf) under a 2 Mbit/s live encoder that
#             follows the SDK's bitrate advice (--input testsrc)
#   jitter    300 ms RTT with 50 ms jitter each way: the push goes through
#             tests/chaos/relay.py (user-space delay, this kernel has no
#             netem), in order as a radio link's queue keeps it
#   handover  a Wi-Fi -> mobile switch: through the relay at 20 ms RTT,
#             then 2 s of nothing (Wi-Fi gone), then another address and
#             port (SNAT) on a path of 120 ms +- 60 ms RTT and 3% loss
#   disk      disk full mid-push: the server's data directory on a small
#             tmpfs made here; mid-push a filler file fills it (8 s short,
#             20 s full), then is removed. The phone must be told
#             storage_full and resume, nothing acknowledged lost, health
#             and an earlier recording's VOD answer 200 while full, the
#             episode counted and logged once, the VOD every frame once
#   kill      twenty phones killed together: 20 pushes on loopback, the
#             server SIGKILLed at a random moment and restarted
#             (tests/chaos/twenty_phones.rs; 3 rounds short, 10 full)
#
# The phone (`sharecast push`) and the server (`sharecast serve`) run in two
# network namespaces joined by a veth pair made here. This kernel has no
# netem: faults are nftables rules on each side's INPUT hook (a drop on
# output would tell the sender with EPERM, which a radio link never does)
# and a tbf qdisc for the rate. Each case prints one `chaos NAME: PASS|FAIL`
# line (tests/chaos/check_vod.py: every frame exactly once in the VOD,
# frames sent / in the VOD, duplicates, resumes, back-to-live time, ack
# latency p99, memory). Logs stay in target/chaos/. Exit status 1 when a
# case fails, 2 when the machine cannot run the suite (no root /
# CAP_NET_ADMIN, no nft/tc/conntrack): said loudly, never a silent pass.
#
# Needs: root (network namespaces), iproute2, nftables, conntrack, ffmpeg,
# GStreamer, python3, and the debug build (`cargo build`; the kill case runs
# `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/../.."

FORM=short
CASES=()
for arg in "$@"; do
  case "$arg" in
    --short) FORM=short ;;
    --full) FORM=full ;;
    loss | blackout | rebind | uplink | jitter | handover | disk | kill) CASES+=("$arg") ;;
    *) echo "usage: $0 [--short|--full] [loss|blackout|rebind|uplink|jitter|handover|disk|kill]..." >&2; exit 64 ;;
  esac
done
[ ${#CASES[@]} -gt 0 ] || CASES=(loss blackout rebind uplink jitter handover disk kill)

if [ "$FORM" = full ]; then
  LOSS_S=30 PRE_S=10 BLACKOUT_S=30 POST_S=10 REBIND_S=30 UPLINK_S=30 KILL_ROUNDS=10
  JITTER_S=30 HANDOVER_S=30 DISK_PRE_S=10 DISK_FULL_S=20 DISK_POST_S=10
else
  LOSS_S=10 PRE_S=5 BLACKOUT_S=12 POST_S=5 REBIND_S=10 UPLINK_S=10 KILL_ROUNDS=3
  JITTER_S=10 HANDOVER_S=10 DISK_PRE_S=6 DISK_FULL_S=8 DISK_POST_S=6
fi

BIN=${SHARECAST_BIN:-$PWD/target/debug/sharecast}
OUT=${CHAOS_DIR:-$PWD/target/chaos}/$(date -u +%Y%m%dT%H%M%SZ)-$FORM
HERE=$PWD/tests/chaos
SUFFIX=$$
NS_PHONE=scphone$SUFFIX NS_SRV=scsrv$SUFFIX
VETH_PHONE=scp$SUFFIX VETH_SRV=scs$SUFFIX
SRV_IP=10.211.0.1 PHONE_IP=10.211.0.2 PHONE_IP2=10.211.0.3
INGEST=$SRV_IP:4433
# The delay relay's port (tests/chaos/relay.py), in the server's namespace.
RELAY_PORT=4434
SERVER_PID=""
# The server's data directory (the disk case moves it to a small tmpfs).
DATA=""
DISK_MNT=""
FAILED=()
SUITE_START=$SECONDS

cannot() {
  {
    echo "=================================================================="
    echo "CHAOS SUITE CANNOT RUN: $*"
    echo "It needs root (or CAP_NET_ADMIN) for network namespaces, and"
    echo "iproute2, nftables and conntrack (scripts/setup.sh installs them)."
    echo "Nothing was tested: this is a failure, not a pass."
    echo "=================================================================="
  } >&2
  exit 2
}

for tool in ip nft tc conntrack ffprobe ffmpeg gst-launch-1.0 python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || cannot "$tool not found"
done
probe_err=$(ip netns add "scprobe$SUFFIX" 2>&1) || cannot "ip netns add failed: $probe_err"
ip netns del "scprobe$SUFFIX"
[ -x "$BIN" ] || { echo "chaos: no $BIN (run cargo build first)" >&2; exit 1; }
mkdir -p "$OUT"
echo "chaos: $FORM form, cases: ${CASES[*]}; logs in $OUT"

cleanup() {
  if [ -n "${RELAY_PID:-}" ]; then
    kill -9 "$RELAY_PID" 2>/dev/null || true
  fi
  if [ -n "$SERVER_PID" ]; then
    { kill -9 "$SERVER_PID" && wait "$SERVER_PID"; } 2>/dev/null || true
  fi
  if [ -n "$DISK_MNT" ]; then
    umount "$DISK_MNT" 2>/dev/null || true
  fi
  ip netns del "$NS_PHONE" 2>/dev/null || true
  ip netns del "$NS_SRV" 2>/dev/null || true
}
trap cleanup EXIT

# ------------------------------------------------------------- network ---

in_phone() { ip netns exec "$NS_PHONE" "$@"; }
in_srv() { ip netns exec "$NS_SRV" "$@"; }

make_network() {
  ip netns add "$NS_PHONE"
  ip netns add "$NS_SRV"
  ip link add "$VETH_PHONE" netns "$NS_PHONE" type veth peer name "$VETH_SRV" netns "$NS_SRV"
  ip -n "$NS_PHONE" addr add "$PHONE_IP/24" dev "$VETH_PHONE"
  ip -n "$NS_PHONE" addr add "$PHONE_IP2/24" dev "$VETH_PHONE"
  ip -n "$NS_SRV" addr add "$SRV_IP/24" dev "$VETH_SRV"
  for ns in "$NS_PHONE" "$NS_SRV"; do
    ip -n "$ns" link set lo up
    ip netns exec "$ns" nft -f - <<'EOF'
table inet chaos {
  chain input { type filter hook input priority 0; policy accept; }
}
EOF
  done
  ip -n "$NS_PHONE" link set "$VETH_PHONE" up
  ip -n "$NS_SRV" link set "$VETH_SRV" up
  # The phone's NAT (a mapping per socket, like a carrier's): its uploads
  # leave from PHONE_IP, ports 62000-62999, until a rebind. The NAT ports
  # are above the ephemeral range (32768-60999), so a mapping always
  # changes the port: were the socket's own port inside the range, the NAT
  # would keep it, and after a rebind the server's next packet to that
  # address would make a conntrack entry whose reply direction the phone's
  # packets then match, unchanged by the new rule (the rebind would not
  # happen).
  in_phone nft -f - <<'EOF'
table ip chaosnat {
  chain post { type nat hook postrouting priority srcnat; policy accept; }
}
EOF
  nat_to "$PHONE_IP:62000-62999"
}

# Both sides' INPUT hooks: RULE for packets arriving over the veth.
drop_rule() {
  in_phone nft add rule inet chaos input iifname "$VETH_PHONE" "$@"
  in_srv nft add rule inet chaos input iifname "$VETH_SRV" "$@"
}

# nat_to ADDR:PORTS: the phone's uploads leave from there from now on (the
# old mappings are deleted, so a socket's next packet gets a new one).
nat_to() {
  in_phone nft flush chain ip chaosnat post
  in_phone nft add rule ip chaosnat post ip daddr "$SRV_IP" udp dport "{ 4433, $RELAY_PORT }" snat to "$1"
  in_phone conntrack -D -p udp --dport 4433 >/dev/null 2>&1 || true
  in_phone conntrack -D -p udp --dport "$RELAY_PORT" >/dev/null 2>&1 || true
}

reset_network() {
  in_phone nft flush chain inet chaos input
  in_srv nft flush chain inet chaos input
  in_phone tc qdisc del dev "$VETH_PHONE" root 2>/dev/null || true
  nat_to "$PHONE_IP:62000-62999"
}

# --------------------------------------------------------------- server ---

# start_server [DATA_DIR [LOG_NAME]]: the server on DATA_DIR (default
# $OUT/data), its log in $OUT/LOG_NAME.log (default server).
start_server() {
  DATA=${1:-$OUT/data}
  SERVER_LOG=$OUT/${2:-server}.log
  local out=$OUT/${2:-server}.out
  # `ip netns exec` directly (not the in_srv function): the background
  # job's PID is then the server's own (ip execs it), so cleanup kills it.
  ip netns exec "$NS_SRV" env RUST_LOG=info,sharecast=debug "$BIN" serve --data-dir "$DATA" \
    --ingest-listen "$INGEST" --http-listen 127.0.0.1:0 --rtsp-port 0 \
    >"$out" 2>"$SERVER_LOG" &
  SERVER_PID=$!
  for _ in $(seq 600); do
    [ -s "$DATA/server.json" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; echo "chaos: the server exited" >&2; exit 1; }
    sleep 0.1
  done
  FINGERPRINT=$(server_json fingerprint)
  HTTP=$(server_json http)
  # The demo token is printed at a data directory's first start only.
  local token
  token=$(sed -n 's/^Demo device token (shown once; stored hashed): //p' "$out")
  TOKEN=${token:-${TOKEN:-}}
  [ -n "$TOKEN" ] || { echo "chaos: no demo token in the server's banner" >&2; exit 1; }
}

server_json() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$DATA/server.json" "$1"
}

stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# ----------------------------------------------------------------- push ---

# A clip of SECONDS seconds (640x360 30 fps H.264 at 1 Mbit/s without B
# frames, 48 kHz AAC), made once per run like fixtures/generate.sh makes
# the test clips.
clip() {
  local s=$1 f="$OUT/clip-$1s.mp4"
  if [ ! -s "$f" ]; then
    gst-launch-1.0 -q -e mp4mux name=mux ! filesink location="$f" \
      videotestsrc num-buffers=$((s * 30)) pattern=ball horizontal-speed=4 \
      ! video/x-raw,width=640,height=360,framerate=30/1 ! timeoverlay ! videoconvert \
      ! x264enc speed-preset=veryfast key-int-max=30 bitrate=1000 bframes=0 ! h264parse ! mux. \
      audiotestsrc num-buffers=$(((s * 48000 + 1023) / 1024)) samplesperbuffer=1024 wave=sine \
      ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac bitrate=128000 ! aacparse ! mux. \
      >"$OUT/clip.log" 2>&1 || { cat "$OUT/clip.log" >&2; exit 1; }
  fi
  echo "$f"
}

# Prefix every line with the wall clock (epoch seconds, microseconds).
stamp() { while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }

# push DIR ARGS...: starts a push in the phone's namespace, in the
# background (PUSH_PID); DIR gets push.out, push.err (stamped), push.rss.
push() {
  local d=$1
  shift
  mkdir -p "$d"
  (
    in_phone env RUST_LOG=info timeout 600 /usr/bin/time -f '%M' -o "$d/push.rss" \
      "$BIN" push --server "${PUSH_SERVER:-$INGEST}" --token "$TOKEN" --pin "$FINGERPRINT" \
      --stats-interval-ms 100 "$@" 2>&1 >"$d/push.out" | stamp >"$d/push.err"
  ) &
  PUSH_PID=$!
}

# Waits for the push started last; its exit status in PUSH_STATUS.
wait_push() {
  PUSH_STATUS=0
  wait "$PUSH_PID" || PUSH_STATUS=$?
}

# verdict NAME DIR [check_vod.py options]: checks the VOD of the push that
# ended (wait_push) and prints the case's result line.
verdict() {
  local name=$1 d=$2 status=$PUSH_STATUS
  shift 2
  local session
  session=$(sed -n 's/^session //p' "$d/push.out")
  if [ "$status" -ne 0 ] || [ -z "$session" ]; then
    echo "chaos $name: FAIL: the push failed (status $status); last lines of $d/push.err:"
    tail -n 15 "$d/push.err"
    FAILED+=("$name")
    return
  fi
  python3 "$HERE/check_vod.py" --name "$name" --push-out "$d/push.out" --push-err "$d/push.err" \
    --vod "$DATA/sessions/$session/source.mp4" --rss-file "$d/push.rss" \
    --json "$d/result.json" "$@" || FAILED+=("$name")
}

# ---------------------------------------------------------------- cases ---

case_loss() {
  local d="$OUT/loss" src
  src=$(clip "$LOSS_S")
  drop_rule numgen random mod 100 '<' 20 drop
  push "$d" --input "$src" --realtime
  wait_push
  reset_network
  verdict loss-20pc "$d" --source "$src"
}

case_blackout() {
  local d="$OUT/blackout" src back
  src=$(clip $((PRE_S + BLACKOUT_S + POST_S)))
  push "$d" --input "$src" --realtime
  sleep "$PRE_S"
  drop_rule drop
  sleep "$BLACKOUT_S"
  reset_network
  back=$EPOCHREALTIME
  wait_push
  verdict "blackout-${BLACKOUT_S}s" "$d" --source "$src" --link-back "$back"
}

case_rebind() {
  local d="$OUT/rebind" src at
  src=$(clip "$REBIND_S")
  push "$d" --input "$src" --realtime
  sleep $((REBIND_S / 2))
  nat_to "$PHONE_IP2:63000-63999"
  at=$EPOCHREALTIME
  # The upload's packets took the new mapping (the server answers the new
  # address), or the case proves nothing. Looked for over up to 5 s: a
  # listing can come back empty or before the new entry is made.
  local i
  for i in $(seq 25); do
    sleep 0.2
    in_phone conntrack -L -p udp --dport 4433 >"$d/conntrack.txt" 2>/dev/null || true
    grep -q "dst=$PHONE_IP2 " "$d/conntrack.txt" && break
  done
  wait_push
  verdict nat-rebind "$d" --source "$src" --link-back "$at"
  if ! grep -q "dst=$PHONE_IP2 " "$d/conntrack.txt"; then
    echo "chaos nat-rebind: FAIL: no upload packets through the new mapping ($d/conntrack.txt)"
    FAILED+=(nat-rebind)
  fi
}

case_uplink() {
  local d="$OUT/uplink"
  in_phone tc qdisc add dev "$VETH_PHONE" root tbf rate 1mbit burst 32kb latency 400ms
  push "$d" --input testsrc --duration "$UPLINK_S" --bitrate 2000000
  wait_push
  reset_network
  verdict uplink-1mbit "$d"
  local lowest
  lowest=$(sed -n 's/^advice .* bitrate=\([0-9]*\) .*/\1/p' "$d/push.out" | sort -n | head -n 1)
  echo "chaos uplink-1mbit: lowest bitrate advice ${lowest:-none} bit/s"
}

# The delay relay (tests/chaos/relay.py) in the server's namespace, from
# SRV_IP:RELAY_PORT to the ingest; pushes reach it with
# PUSH_SERVER=$SRV_IP:$RELAY_PORT. start_relay DIR RELAY-ARGS...
start_relay() {
  local d=$1
  shift
  mkdir -p "$d"
  ip netns exec "$NS_SRV" python3 "$HERE/relay.py" --listen "$SRV_IP:$RELAY_PORT" --upstream "$INGEST" "$@" \
    2>"$d/relay.log" &
  RELAY_PID=$!
  for _ in $(seq 50); do
    grep -q '^relay: ' "$d/relay.log" 2>/dev/null && return
    sleep 0.1
  done
  echo "chaos: the relay did not start: $(cat "$d/relay.log")" >&2
  exit 1
}

stop_relay() {
  kill -TERM "$RELAY_PID" 2>/dev/null || true
  wait "$RELAY_PID" 2>/dev/null || true
}

case_jitter() {
  local d="$OUT/jitter" src
  src=$(clip "$JITTER_S")
  start_relay "$d" --delay-ms 150 --jitter-ms 50
  PUSH_SERVER="$SRV_IP:$RELAY_PORT" push "$d" --input "$src" --realtime
  wait_push
  stop_relay
  verdict rtt-300ms-jitter-50ms "$d" --source "$src"
  tail -n 1 "$d/relay.log"
}

case_handover() {
  local d="$OUT/handover" src at
  src=$(clip "$HANDOVER_S")
  start_relay "$d" --delay-ms 10 --jitter-ms 2 \
    --then-delay-ms 60 --then-jitter-ms 30 --then-loss-pct 3
  PUSH_SERVER="$SRV_IP:$RELAY_PORT" push "$d" --input "$src" --realtime
  sleep $((HANDOVER_S / 2))
  # Wi-Fi gone: nothing passes for 2 s. Then the mobile path: another
  # address and port, a longer and lossier path.
  drop_rule drop
  sleep 2
  nat_to "$PHONE_IP2:63000-63999"
  kill -USR1 "$RELAY_PID"
  in_phone nft flush chain inet chaos input
  in_srv nft flush chain inet chaos input
  at=$EPOCHREALTIME
  wait_push
  stop_relay
  reset_network
  verdict wifi-to-mobile "$d" --source "$src" --link-back "$at"
  tail -n 1 "$d/relay.log"
  # The phone came from a second address: the relay served two.
  if ! grep -q 'client addresses 2' "$d/relay.log"; then
    echo "chaos wifi-to-mobile: FAIL: the phone's address did not change ($d/relay.log)"
    FAILED+=(wifi-to-mobile)
  fi
}

# An HTTP GET in the server's namespace: its status code.
http_status() {
  in_srv curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" || true
}

case_disk() {
  local d="$OUT/disk" src early early_session health vod_status full_status main_token=$TOKEN
  mkdir -p "$d"
  # The server's data directory on a 64 MiB tmpfs of its own.
  stop_server
  DISK_MNT="$d/mnt"
  mkdir -p "$DISK_MNT"
  mount -t tmpfs -o size=64m tmpfs "$DISK_MNT"
  start_server "$DISK_MNT/data" server-disk
  # An earlier recording, finished before the disk fills.
  early=$(clip 3)
  push "$d/early" --input "$early"
  wait_push
  early_session=$(sed -n 's/^session //p' "$d/early/push.out")
  src=$(clip $((DISK_PRE_S + DISK_FULL_S + DISK_POST_S)))
  push "$d" --input "$src" --realtime
  sleep "$DISK_PRE_S"
  # Fill the filesystem: the filler grows until the disk is full.
  dd if=/dev/zero of="$DISK_MNT/filler" bs=64k >/dev/null 2>&1 || true
  local filled=$EPOCHREALTIME
  sleep 2
  health=$(http_status "$HTTP/api/v1/health")
  vod_status=$(http_status "$HTTP/vod/$early_session/source.mp4")
  local metrics
  metrics=$(in_srv curl -s --max-time 10 -H "Authorization: Bearer $(cat "$DATA/admin-token")" "$HTTP/metrics" || true)
  full_status=$(df --output=avail "$DISK_MNT" | tail -n 1 | tr -d ' ')
  sleep $((DISK_FULL_S - 2))
  rm -f "$DISK_MNT/filler"
  local back=$EPOCHREALTIME
  wait_push
  verdict "disk-full-${DISK_FULL_S}s" "$d" --source "$src" --link-back "$back"
  local full_count episodes told logged
  full_count=$(sed -n 's/^sharecast_ingest_storage_full_total \([0-9]*\)$/\1/p' <<<"$metrics")
  episodes=$(sed -n 's/^sharecast_ingest_storage_full_episodes_total \([0-9]*\)$/\1/p' <<<"$metrics")
  told=$(grep -c 'storage_full' "$d/push.err" || true)
  logged=$(grep -c "journals' filesystem is full" "$SERVER_LOG" || true)
  echo "chaos disk-full: disk filled at $filled (${full_status:-?} KiB left); while full: health $health, earlier VOD $vod_status, storage_full writes ${full_count:-none}, episodes ${episodes:-none}; phone told storage_full $told times; 'filesystem is full' logged $logged times"
  local why=""
  [ "$health" = 200 ] || why+=" health answered $health while full;"
  [ "$vod_status" = 200 ] || why+=" the earlier VOD answered $vod_status while full;"
  [ "${full_count:-0}" -gt 0 ] || why+=" no refused journal write counted;"
  [ "${episodes:-0}" = 1 ] || why+=" episodes counted ${episodes:-none}, not 1;"
  [ "$told" -gt 0 ] || why+=" the phone never heard storage_full;"
  [ "$logged" = 1 ] || why+=" the full filesystem was logged $logged times, not once;"
  kill -0 "$SERVER_PID" 2>/dev/null || why+=" the server died;"
  if [ -n "$why" ]; then
    echo "chaos disk-full: FAIL:$why"
    FAILED+=(disk-full)
  fi
  stop_server
  umount "$DISK_MNT"
  DISK_MNT=""
  # The other cases' server again, on its own data directory.
  start_server "$OUT/data" server-after-disk
  TOKEN=$main_token
}

case_kill() {
  local log="$OUT/kill.log" status=0
  SHARECAST_BIN="$BIN" SHARECAST_CHAOS_ROUNDS=$KILL_ROUNDS \
    cargo test --quiet --test chaos_twenty_phones -- --ignored --nocapture \
    >"$log" 2>&1 || status=$?
  grep -E '^(kill-20|chaos kill-20)' "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "chaos kill-20: FAIL (cargo test status $status); see $log"
    tail -n 40 "$log"
    FAILED+=(kill-20)
  else
    echo "chaos kill-20: PASS: $KILL_ROUNDS rounds"
  fi
}

NETWORK_MADE=""
for c in "${CASES[@]}"; do
  started=$SECONDS
  if [ "$c" != kill ] && [ -z "$NETWORK_MADE" ]; then
    make_network
    start_server
    NETWORK_MADE=1
  fi
  "case_$c"
  echo "chaos: case $c took $((SECONDS - started)) s"
done

echo "chaos: $FORM form took $((SECONDS - SUITE_START)) s; logs in $OUT"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "chaos: FAILED: ${FAILED[*]}" >&2
  exit 1
fi
echo "chaos: all cases passed"
