#!/usr/bin/env bash
# Generates the Kotlin (JNA) and Swift bindings of the client SDK
# (client-sdk/ffi) with UniFFI, from the library built for this machine.
# Generated files are build outputs, never committed.
#
#   bash scripts/sdk-bindings.sh [OUT_DIR]
#
# OUT_DIR defaults to target/sharecast-bindings; it receives
#   kotlin/net/sharecast/sdk/ffi/sharecast_sdk.kt   (package net.sharecast.sdk.ffi)
#   swift/SharecastFFI.swift, SharecastFFIFFI.h, SharecastFFIFFI.modulemap
#   lib/libsharecast_sdk.so                          (the library the bindings load)
# The bindings do not depend on the machine they are generated on: the
# same files serve the Android .so per ABI (cargo-ndk) and the iOS
# XCFramework (docs/mobile.md). Set CARGO_PROFILE=release for a release
# library.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/sharecast-bindings}"
profile="${CARGO_PROFILE:-dev}"
dir=debug
[ "$profile" = release ] && dir=release
target_dir="${CARGO_TARGET_DIR:-target}"

# One cargo invocation builds the library and the generator with the same
# features, so the generator reads the library it ships with.
cargo build --profile "$profile" -p sharecast-client-sdk-ffi --features bindgen \
  --lib --bin uniffi-bindgen
lib="$target_dir/$dir/libsharecast_sdk.so"
[ -f "$lib" ] || { echo "sdk-bindings: $lib was not built" >&2; exit 1; }
bindgen="$target_dir/$dir/uniffi-bindgen"

rm -rf "$out/kotlin" "$out/swift" "$out/lib"
mkdir -p "$out/kotlin" "$out/swift" "$out/lib"
"$bindgen" generate --library "$lib" --language kotlin --out-dir "$out/kotlin" --no-format
"$bindgen" generate --library "$lib" --language swift --out-dir "$out/swift" --no-format
cp "$lib" "$out/lib/"

# Generation must give both languages' sources.
kt=$(find "$out/kotlin" -name '*.kt' | head -n 1)
sw=$(find "$out/swift" -name '*.swift' | head -n 1)
[ -n "$kt" ] || { echo "sdk-bindings: no Kotlin source generated" >&2; exit 1; }
[ -n "$sw" ] || { echo "sdk-bindings: no Swift source generated" >&2; exit 1; }
echo "sdk-bindings: Kotlin $kt"
echo "sdk-bindings: Swift $sw ($(ls "$out/swift" | tr '\n' ' '))"
