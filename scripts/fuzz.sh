#!/usr/bin/env bash
# The decoders under libFuzzer (fuzz/, docs/reliability.md "Fuzzing"), on
# the stable toolchain: the targets are built with libfuzzer-sys and rustc's
# stable coverage instrumentation (no nightly, no cargo-fuzz needed), then
# run one at a time from their seeds (fuzz/corpus/TARGET, kept in the
# repository) into a grown corpus (fuzz/grown/TARGET, never committed).
#
#   scripts/fuzz.sh [--short|--full] [TARGET...]
#
#   --short  (the default; CI) about SHARECAST_FUZZ_SHORT_SECONDS (12) s a target
#   --full   10 million executions or one hour a target, whichever first
#            (SHARECAST_FUZZ_RUNS, SHARECAST_FUZZ_SECONDS override them)
#
# Prints per target: executions, executions per second, corpus size,
# crashes; exits non-zero if any target crashed (the input is kept in
# fuzz/artifacts/TARGET/ and replayed by `fuzz/target/.../TARGET FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=short
targets=()
for arg in "$@"; do
  case "$arg" in
    --short) mode=short ;;
    --full) mode=full ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $arg" >&2; exit 2 ;;
    *) targets+=("$arg") ;;
  esac
done
if [ "$mode" = full ]; then
  runs=${SHARECAST_FUZZ_RUNS:-10000000}
  seconds=${SHARECAST_FUZZ_SECONDS:-3600}
else
  runs=${SHARECAST_FUZZ_RUNS:-100000000}
  seconds=${SHARECAST_FUZZ_SHORT_SECONDS:-12}
fi

all=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^sharecast-fuzz$')
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets <<<"$all"
fi
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$all" || { echo "fuzz.sh: no target $t (targets: $(echo $all))" >&2; exit 2; }
done

# The instrumentation cargo-fuzz uses with `--sanitizer none`, all of it
# stable rustc options. An explicit --target keeps it off build scripts and
# proc macros.
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
export CARGO_INCREMENTAL=0
build_start=$SECONDS
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --manifest-path fuzz/Cargo.toml --target "$host" "${bins[@]}"
echo "fuzz.sh: build took $((SECONDS - build_start)) s"
bindir=fuzz/target/$host/debug

status=0
summary=()
for t in "${targets[@]}"; do
  seeds=fuzz/corpus/$t
  grown=fuzz/grown/$t
  artifacts=fuzz/artifacts/$t
  mkdir -p "$seeds" "$grown" "$artifacts"
  log=fuzz/target/$t.log
  start=$SECONDS
  touch "$log.start"
  rc=0
  "$bindir/$t" -runs="$runs" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" -max_len=8192 "$grown" "$seeds" >"$log" 2>&1 || rc=$?
  took=$((SECONDS - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # libFuzzer's last status line: "corp: UNITS/BYTES".
  corpus=$(grep -o 'corp: [0-9]*/[0-9a-zA-Z]*' "$log" | tail -1 | sed 's/corp: //')
  crashes=$(find "$artifacts" -type f -newer "$log.start" | wc -l)
  line="$t: ${execs:-?} executions in ${took} s, ${rate:-?} exec/s, corpus ${corpus:-?} units/bytes, crashes ${crashes}"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    line="$line (FAILED, exit $rc; log $log)"
    grep -E '^(==[0-9]+== ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -8 || true
  fi
  echo "fuzz.sh: $line"
  summary+=("$line")
done
echo "fuzz.sh: summary ($mode)"
printf '  %s\n' "${summary[@]}"
exit $status
