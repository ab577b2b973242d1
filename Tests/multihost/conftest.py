"""Issue 13: the system on several hosts. One session builds the hosts (network namespaces, hosts.py), starts
Postgres on A, the API and a worker on B, an SSE replica on C and one on D, Caddy on E, and runs the clients on F;
it tears everything down even when a test fails (and removes what a killed earlier run left behind first).
Needs root and iproute2; the Handoff binaries come from HANDOFF_BIN_DIR (default .build/debug). The namespace names
are fixed (hmh-*), so one run at a time per machine."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from cluster import NOTES, OCTETS, RESULTS, Cluster  # also puts scripts/ and Tests/e2e on sys.path
from faults import HEADER
from handoff_stack import ROOT
from hosts import Hosts

START_TIMEOUT = 90


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    bin_dir = Path(os.environ.get("HANDOFF_BIN_DIR", ROOT / ".build" / "debug")).resolve()
    for binary in ("handoff-api", "handoff-worker", "handoff-sse"):
        deadline = time.monotonic() + 120  # another engineer's build may be relinking it right now
        while not (bin_dir / binary).exists() and time.monotonic() < deadline:
            time.sleep(2)
    hosts = Hosts(OCTETS)
    cluster = None
    try:
        hosts.create()  # removes the namespaces, and so the processes, an earlier run left behind
        for stale in Path("/tmp").glob("hmh-pg-*"):  # and the Postgres data of such a run (one run at a time)
            shutil.rmtree(stale, ignore_errors=True)
        cluster = Cluster(hosts, tmp_path_factory.mktemp("multihost-logs"), bin_dir)
        cluster.start_postgres()
        cluster.create_database()
        cluster.start_services()
        cluster.wait_ready(time.monotonic() + START_TIMEOUT)
        yield cluster
    finally:
        try:
            if cluster is not None:
                for a, b in list(hosts.partitions):
                    hosts.heal(a, b)
                cluster.stop()
                cluster.stop_postgres()
        finally:
            hosts.destroy()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test shows the last lines of every process's log."""
    outcome = yield
    report = outcome.get_result()
    cluster = item.funcargs.get("cluster") if hasattr(item, "funcargs") else None
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
