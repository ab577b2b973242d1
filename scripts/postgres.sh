#!/usr/bin/env bash
# A project-local Postgres cluster for `make run`, the tests and the benchmarks.
#
#   scripts/postgres.sh init    create the cluster and its database if missing
#   scripts/postgres.sh run     run it in the foreground (the Procfile's postgres process)
#   scripts/postgres.sh start   start it in the background and wait until it accepts connections
#   scripts/postgres.sh stop    stop a background cluster
#   scripts/postgres.sh reset   stop it and delete its data
#
# HANDOFF_PG_PORT (default 54329) and HANDOFF_PGDATA choose the cluster; HANDOFF_PG_OPTIONS adds server options
# (`-c name=value ...`: the benchmark turns on pg_stat_statements). Postgres refuses to run as root, so as
# root it runs as the `postgres` user, with its data under /tmp (a clone may live under a 0700 home that
# user cannot enter); .data/postgres then links to it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=${HANDOFF_PG_PORT:-54329}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/postgres" ] || { echo "postgres server binaries not found: run scripts/install-deps.sh" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then
    as_pg=(runuser -u postgres --)
    default_data="/tmp/handoff-pg-$(printf %s "$root" | md5sum | cut -c1-8)-$port"
else
    as_pg=()
    default_data="$root/.data/postgres-$port"
fi
data=${HANDOFF_PGDATA:-$default_data}

init() {
    [ -s "$data/PG_VERSION" ] && return
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$data" && chmod 700 "$data"
    "${as_pg[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-instructions >/dev/null
    # Single-user mode: no server listens yet, so nothing can connect to a cluster that is about to restart.
    echo "CREATE DATABASE handoff;" | "${as_pg[@]}" "$bin/postgres" --single -D "$data" -j postgres >"$data/init.log" 2>&1 ||
        { cat "$data/init.log" >&2; exit 1; }
    mkdir -p "$root/.data"
    [ "$data" = "$root/.data/postgres-$port" ] || ln -sfn "$data" "$root/.data/postgres-$port"
}

server_options=(-h 127.0.0.1 -p "$port" -k /tmp -c max_connections=300 ${HANDOFF_PG_OPTIONS:-})

start() {
    "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 -o "${server_options[*]}" start >/dev/null || {
        echo "postgres did not start on port $port; its log says:" >&2
        tail -n 5 "$data/server.log" >&2
        exit 1
    }
}

stop() {
    "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
    init) init ;;
    # A background instance (from `start`) would hold the lock file: the foreground server takes over.
    run) init; stop; exec "${as_pg[@]}" "$bin/postgres" -D "$data" "${server_options[@]}" ;;
    start) init; "${as_pg[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 || start ;;
    stop) stop ;;
    reset) stop; rm -rf "$data" "$root/.data/postgres-$port" ;;
    *) echo "usage: $0 init|run|start|stop|reset" >&2; exit 2 ;;
esac
