#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, in a directory of its own.
#
#   scripts/pg-test-cluster.sh start DIR   # prints GRID_TEST_PG_URL=postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/pg-test-cluster.sh stop DIR    # stops it by the postmaster's PID; DIR is left for the caller
#
# The same recipe as bench/ledger_bench.cc's baseline: initdb in DIR/data
# (as the postgres user when run as root: PostgreSQL refuses to run as root),
# trust authentication, listening on 127.0.0.1 only on a free port, its unix
# socket in DIR, fsync and synchronous_commit on (the store promises durable
# commits, so its tests run against a durable server). initdb --no-sync only
# skips initdb's own final flush of the fresh cluster. The server log is
# DIR/server.log. Needs PostgreSQL's server binaries (Debian: postgresql-15;
# PG_BIN overrides where they are looked for).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  local b
  for b in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -Vr); do
    if [ -x "$b/initdb" ] && [ -x "$b/pg_ctl" ]; then echo "$b"; return; fi
  done
  echo "pg-test-cluster: no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin;" \
    "install postgresql-15 (scripts/install-deps.sh) or set PG_BIN" >&2
  exit 1
}

# Runs a command as the cluster's owner: postgres when we are root, else us.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# True when something accepts connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local bin
  bin=$(pg_bin)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -e "$dir/data/PG_VERSION" ]; then
    echo "pg-test-cluster: $dir/data already holds a cluster; stop it and use a fresh DIR" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    getent passwd postgres >/dev/null || { echo "pg-test-cluster: running as root and there is no postgres user" >&2; exit 1; }
    chown postgres: "$dir"
    chmod 0755 "$dir"  # its parents must be traversable by postgres too (mktemp -d under /tmp is)
  fi
  if ! as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
      >"$dir/initdb.log" 2>&1; then
    echo "pg-test-cluster: initdb failed:" >&2
    cat "$dir/initdb.log" >&2
    exit 1
  fi
  # A port nobody answers on; if another process takes it between our check
  # and the server's bind, the start fails and we try another.
  local port attempt
  for attempt in 1 2 3 4 5 6 7 8; do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=on -c synchronous_commit=on" \
        start >"$dir/pg_ctl.log" 2>&1; then
      echo "$port" >"$dir/port"
      echo "GRID_TEST_PG_URL=postgres://postgres@127.0.0.1:$port/postgres"
      return 0
    fi
    if ! grep -q "could not bind\|could not create any TCP/IP sockets" "$dir/server.log" 2>/dev/null; then
      break
    fi
  done
  echo "pg-test-cluster: the server did not start:" >&2
  cat "$dir/pg_ctl.log" >&2
  tail -n 20 "$dir/server.log" >&2 2>/dev/null || true
  exit 1
}

stop() {
  local pidfile="$dir/data/postmaster.pid" pid i
  [ -f "$pidfile" ] || return 0  # never started, or already stopped
  pid=$(head -n 1 "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  # SIGINT is PostgreSQL's "fast shutdown": clients are disconnected, the
  # server checkpoints and exits. SIGKILL only if that takes over 30 s.
  kill -INT "$pid"
  for i in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "pg-test-cluster: postmaster $pid did not stop in 30 s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
