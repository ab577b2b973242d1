"""Issue 13: the system on several hosts. Each module builds its hosts (network namespaces, hosts.py) and tears them
down even when a test fails (removing what a killed earlier run left behind first), one module's hosts at a time:
- `cluster` (test_multihost.py): Postgres on A, the API and a worker on B, an SSE replica on C and one on D, Caddy on
  E, the clients on F;
- `pair_cluster` (test_postgres_failover.py, issue 23): the same with Postgres as a Patroni pair, pg1 on A and pg2
  on G, etcd on A, G and the witness W, HAProxy on B (pair_cluster.py).
Needs root and iproute2; the Handoff binaries come from HANDOFF_BIN_DIR (default .build/debug). The namespace names
are fixed (hmh-*), so one run at a time per machine."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import pytest
from cluster import NOTES, OCTETS, RESULTS, Cluster  # also puts scripts/ and Tests/e2e on sys.path
from faults import HEADER
from handoff_stack import ROOT
from hosts import Hosts
from pair_cluster import HOME_PREFIX, PAIR_OCTETS, PairCluster, pair_on

START_TIMEOUT = 90


def binaries() -> Path:
    bin_dir = Path(os.environ.get("HANDOFF_BIN_DIR", ROOT / ".build" / "debug")).resolve()
    for binary in ("handoff-api", "handoff-worker", "handoff-sse"):
        deadline = time.monotonic() + 120  # another engineer's build may be relinking it right now
        while not (bin_dir / binary).exists() and time.monotonic() < deadline:
            time.sleep(2)
    return bin_dir


@contextlib.contextmanager
def built(octets: dict[str, int]):
    """The hosts, created (after removing what an earlier run left behind), destroyed with all that runs in them."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    hosts = Hosts(octets)
    try:
        hosts.create()  # removes the namespaces, and so the processes, an earlier run left behind
        for stale in [*Path("/tmp").glob("hmh-pg-*"), *Path("/tmp").glob(f"{HOME_PREFIX}*")]:
            shutil.rmtree(stale, ignore_errors=True)  # and the Postgres data of such a run (one run at a time)
        yield hosts
    finally:
        hosts.destroy()


def stop(hosts: Hosts, cluster: Cluster | None) -> None:
    if cluster is not None:
        for a, b in list(hosts.partitions):
            hosts.heal(a, b)
        cluster.stop()
        cluster.stop_postgres()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with built(OCTETS) as hosts:
        bin_dir = binaries()
        cluster = None
        try:
            cluster = Cluster(hosts, tmp_path_factory.mktemp("multihost-logs"), bin_dir)
            cluster.start_postgres()
            cluster.create_database()
            cluster.start_services()
            cluster.wait_ready(time.monotonic() + START_TIMEOUT)
            yield cluster
        finally:
            stop(hosts, cluster)


@pytest.fixture(scope="module")
def pair_cluster(tmp_path_factory):
    with built(PAIR_OCTETS) as hosts:
        bin_dir = binaries()
        log_dir = tmp_path_factory.mktemp("multihost-pair-logs")
        pair = pair_on(hosts, log_dir / "pair")
        cluster = None
        try:
            pair.start()
            cluster = PairCluster(hosts, log_dir, bin_dir, pair)
            cluster.create_database()
            cluster.start_services()
            cluster.wait_ready(time.monotonic() + START_TIMEOUT)
            yield cluster
        finally:
            try:
                stop(hosts, cluster)
            finally:
                pair.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test shows the last lines of every process's log."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    cluster = funcargs.get("cluster") or funcargs.get("pair_cluster")
    if report.failed and cluster is not None:
        report.sections.append(("process logs", cluster.log_tails()))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if RESULTS:
        terminalreporter.section("several hosts: faults under load")
        terminalreporter.write_line(HEADER)
        for verdict in RESULTS:
            terminalreporter.write_line(verdict.row())
        for note in NOTES:
            terminalreporter.write_line(note)
