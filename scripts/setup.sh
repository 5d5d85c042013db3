#!/usr/bin/env bash
# Installs every system package Sharecast needs on Debian/Ubuntu, and the npm
# packages of web/ (locked versions). Safe to run again: it only installs what
# is missing. The test media come from fixtures/generate.sh, which
# scripts/serve.sh and scripts/test.sh run after this.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  pkg-config build-essential
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  libgstrtspserver-1.0-dev gstreamer1.0-rtsp
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-x ffmpeg sqlite3 curl ca-certificates
  # The store's tests on PostgreSQL (scripts/postgres.sh starts a throwaway
  # server from it).
  postgresql
  kannel kannel-extras chromium
  # The phone SDK's Kotlin binding runs on the JVM in tests/mobile_kotlin.rs.
  openjdk-17-jdk-headless libjna-java
  # The chaos suite (tests/chaos/run.sh): network namespaces, veth, tbf,
  # nftables loss and blackouts, conntrack for NAT rebinding, /usr/bin/time.
  iproute2 nftables conntrack time
  # Schemathesis (PyPI) checks the OpenAPI description against the server
  # (tests/openapi_schemathesis.rs), from a virtual environment.
  python3 python3-venv
)
# Node.js and npm from Debian unless the machine already has them (a Node.js
# from another source bundles its own npm, which Debian's npm conflicts with).
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  install=()
  for p in "${missing[@]}"; do
    # Ubuntu ships Chromium only as a snap, with no `chromium` package: the
    # server does not need it, only the browser tests do (they run
    # /usr/bin/chromium, or $CHROMIUM for web/share).
    if [ "$p" = chromium ] && ! apt-cache show chromium >/dev/null 2>&1; then
      echo "setup: no 'chromium' package in this distribution's archive; skipped (the browser tests need a Chromium: install one and set CHROMIUM to its path)" >&2
      continue
    fi
    install+=("$p")
  done
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${install[@]}"
fi

# Front-end libraries (hls.js, uPlot) from the npm registry, never committed.
# Locked versions (package-lock.json), installed from the npm registry.
if [ ! -f web/node_modules/hls.js/dist/hls.min.js ] || [ ! -f web/node_modules/uplot/dist/uPlot.iife.min.js ]; then
  echo "setup: npm ci --prefix web"
  npm ci --prefix web --no-audit --no-fund --loglevel=error
fi
# Schemathesis from PyPI (locked version), in a virtual environment under
# target/ (a build output, never committed).
SCHEMATHESIS_VERSION=4.32.5
if ! target/schemathesis-venv/bin/schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "setup: pip install schemathesis==$SCHEMATHESIS_VERSION into target/schemathesis-venv"
  python3 -m venv target/schemathesis-venv
  target/schemathesis-venv/bin/pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
# playwright-core drives the system Chromium in the share-page tests.
if [ ! -d web/share/node_modules/playwright-core ]; then
  echo "setup: npm ci --prefix web/share"
  npm ci --prefix web/share --no-audit --no-fund --loglevel=error
fi
# The Kotlin compiler for the phone SDK's JVM tests (its lib/ holds
# kotlin-stdlib and kotlinx-coroutines-core-jvm); locked version.
if [ ! -x client-sdk/ffi/node_modules/kotlin-compiler/bin/kotlinc ]; then
  echo "setup: npm ci --prefix client-sdk/ffi"
  npm ci --prefix client-sdk/ffi --no-audit --no-fund --loglevel=error
fi
# `make check` (run by scripts/test.sh before the tests) needs rustfmt and
# clippy; rustup installs them with the toolchain it manages.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
