#!/usr/bin/env bash
# `make test` after the build: the Swift unit and integration tests, then the end-to-end suite, on a fresh
# Postgres cluster of their own (port HANDOFF_TEST_PG_PORT, default 25439), so a running `make run` is untouched.
# Every port the tests listen on is below Linux's ephemeral range (32768-60999): a port in it can be taken by the
# local end of any client connection of the run itself, and the listener then fails to bind (it happened to 55440).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

export HANDOFF_PG_PORT=${HANDOFF_TEST_PG_PORT:-25439}
unset HANDOFF_PGDATA
scripts/postgres.sh reset
scripts/postgres.sh start
trap 'scripts/postgres.sh stop' EXIT
# Each suite creates and drops its own database through this admin URL.
export HANDOFF_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$HANDOFF_PG_PORT/postgres"
export HANDOFF_BIN_DIR=${HANDOFF_BIN_DIR:-$(swift build --show-bin-path)}

swift test --skip-build
# The benchmark at toy sizes, so it cannot rot (speed is judged by `make bench`, never here).
.venv/bin/python scripts/bench.py --smoke --bin-dir "$HANDOFF_BIN_DIR"
.venv/bin/pytest -q Tests/e2e
