#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests (Debian's `postgresql` package, which
# scripts/setup.sh installs): a cluster made by initdb in a temporary
# directory, listening on 127.0.0.1 only, on a fixed port that is not
# PostgreSQL's default, with trust authentication (nothing but this machine
# reaches it). Run as root, it runs as the unprivileged `postgres` user.
#
#   scripts/postgres.sh start    start it (nothing to do when it runs)
#   scripts/postgres.sh status   exit status 0 when it runs
#   scripts/postgres.sh url      print its URL (the tests' default server)
#   scripts/postgres.sh stop     stop it and remove its directory
#
# SHARECAST_POSTGRES_PORT chooses the port (default 55432). The stores of
# the tests make a fresh database on it for each test (store/src/testing.rs).
set -euo pipefail

PORT="${SHARECAST_POSTGRES_PORT:-55432}"
DIR="${TMPDIR:-/tmp}/sharecast-postgres-$PORT"
URL="postgres://postgres@127.0.0.1:$PORT/postgres"

# The newest installed server's binaries (/usr/lib/postgresql/<version>/bin).
bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    echo "postgres.sh: no PostgreSQL server under /usr/lib/postgresql (run scripts/setup.sh)" >&2
    exit 1
  fi
  echo "$dir"
}

# Runs a command as the cluster's owner, from its directory.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd "$DIR" && runuser -u postgres -- "$@")
  else
    (cd "$DIR" && "$@")
  fi
}

running() {
  [ -f "$DIR/data/PG_VERSION" ] && as_owner "$(bin_dir)/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

start() {
  local bin
  bin=$(bin_dir)
  if running; then
    echo "postgres.sh: running on $URL"
    return
  fi
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$DIR"
  fi
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    rm -rf "$DIR/data"
    as_owner "$bin/initdb" -D "$DIR/data" -U postgres --auth-local=trust --auth-host=trust \
      --encoding=UTF8 --locale=C >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; exit 1; }
  fi
  # A test server: durability traded for speed (the directory is removed
  # by `stop` anyway).
  as_owner "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
  echo "postgres.sh: started on $URL"
}

stop() {
  if running; then
    as_owner "$(bin_dir)/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
  fi
  rm -rf "$DIR"
  echo "postgres.sh: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running ;;
  url) echo "$URL" ;;
  *)
    echo "usage: $0 start|status|url|stop" >&2
    exit 2
    ;;
esac
