"""Starts the whole system once per session: a fresh database, the API server, a worker, two SSE replicas and
Caddy in front, on ports of their own (18080-18083), so a running `make run` (8080-8083) is untouched."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from handoff_stack import ROOT, Ports, Stack  # noqa: E402

from handoff_e2e import API_PORT, CADDY_PORT, POOL_SIZE, SSE_PORTS, TOKEN_DELAY_MS  # noqa: E402

START_TIMEOUT = 60
CLUSTER = pytest.StashKey["Stack"]()


def start_cluster(cluster: Stack) -> None:
    cluster.start_services(settings={"HANDOFF_DB_POOL_SIZE": str(POOL_SIZE)},
                           worker_settings={"HANDOFF_DEMO_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS)})
    deadline = time.monotonic() + START_TIMEOUT
    cluster.wait_healthy(deadline)
    cluster.wait_routed(deadline)


@pytest.fixture(scope="session")
def cluster(request, tmp_path_factory) -> Stack:
    admin_url = os.environ.get("HANDOFF_TEST_DATABASE_URL")
    if not admin_url:
        pytest.fail("HANDOFF_TEST_DATABASE_URL is not set: run `make test` (scripts/test.sh), or start a cluster with "
                    "`HANDOFF_PG_PORT=55439 scripts/postgres.sh start` and export "
                    "HANDOFF_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:55439/postgres", pytrace=False)
    cluster = Stack(admin_url, Ports(caddy=CADDY_PORT, api=API_PORT, sse=SSE_PORTS),
                    log_dir=tmp_path_factory.mktemp("handoff-logs"),
                    bin_dir=Path(os.environ.get("HANDOFF_BIN_DIR", ROOT / ".build" / "debug")).resolve(), prefix="handoff_e2e")
    cluster.create_database()
    request.config.stash[CLUSTER] = cluster
    try:
        try:
            start_cluster(cluster)
        except (RuntimeError, OSError) as error:  # the process logs follow in the terminal summary
            raise pytest.fail.Exception(f"the system did not start: {error}", pytrace=False) from None
        yield cluster
    finally:
        cluster.stop()
        cluster.drop_database()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from faults import HEADER, RESULTS
    if RESULTS:
        terminalreporter.section("fault injection")
        terminalreporter.write_line(HEADER)
        for verdict in RESULTS:
            terminalreporter.write_line(verdict.row())
    cluster = config.stash.get(CLUSTER, None)
    if cluster is not None and exitstatus != 0:
        terminalreporter.section("handoff process logs")
        terminalreporter.write_line(cluster.log_tails())
