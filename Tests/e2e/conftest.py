"""Starts the whole system once per session: a fresh database, the API server, a worker, two SSE replicas and
Caddy in front, on ports of their own (18080-18083), so a running `make run` (8080-8083) is untouched.

Before it, the upstreams the model catalogue points at: two stub OpenAI-compatible servers (upstream_stub.py, A on
18090 and B on 18091) and, when a collected test asks for it, the real llama.cpp `llama-server` with SmolLM2-135M on
18092 (its /health is awaited only by the tests that use it). Their logs go beside the system's, so a failing run
shows them in the terminal summary.

The API-key tests (test_keys.py, test_limits.py, test_charges.py) share `keyed`: two more API servers with keys
required (18084 and 18085) on the session's database, so the session's worker and SSE replicas serve them, behind a
Caddy of their own (18086). The session's API stays keyless (HANDOFF_AUTH=off), so every other test file runs
unchanged.

This file holds the fixtures and the hooks; the catalogue is catalogue_e2e.py's, the upstream processes are
upstreams_e2e.py's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from catalogue_e2e import STUB_API_KEY, catalogue  # noqa: E402
from handoff_e2e import API_PORT, CADDY_PORT, POOL_SIZE, SSE_PORTS, TOKEN_DELAY_MS  # noqa: E402
from handoff_stack import ROOT, Ports, Stack, healthy, wait_until  # noqa: E402
from keys_e2e import API_PORTS as KEYED_API_PORTS  # noqa: E402
from keys_e2e import CADDY as KEYED_CADDY
from keys_e2e import MAX_MESSAGES, MAX_PROMPT_CHARS, Keyed, KeysCLI, keyed_one_token, unique  # noqa: E402
from upstreams_e2e import Upstreams, stop_processes  # noqa: E402

START_TIMEOUT = 60
CLUSTER = pytest.StashKey["Stack"]()
LOG_DIR = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def log_dir(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("handoff-logs")
    request.config.stash[LOG_DIR] = path
    return path


@pytest.fixture(scope="session")
def upstreams(request, log_dir, tmp_path_factory) -> Upstreams:
    """The stubs, started and healthy, and llama-server started (not awaited) when a collected test needs it."""
    catalogue_file = tmp_path_factory.mktemp("catalogue") / "models.json"
    catalogue_file.write_text(json.dumps(catalogue(), indent=2))
    processes = Upstreams(log_dir, catalogue_file)
    try:
        try:
            processes.start_stubs()
            if any("llama_server" in getattr(item, "fixturenames", ()) for item in request.session.items):
                processes.start_llama()
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            raise pytest.fail.Exception(f"the upstreams did not start: {error}", pytrace=False) from None
        yield processes
    finally:
        processes.stop()


@pytest.fixture(scope="session")
def llama_server(upstreams) -> str:
    """The base URL of the real llama-server (http://127.0.0.1:18092), once its /health answers 200."""
    try:
        return upstreams.wait_llama()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        raise pytest.fail.Exception(f"llama-server did not start: {error}", pytrace=False) from None


@pytest.fixture(scope="session")
def task_usage(cluster):
    """task_usage(completion or task id) -> the usage recorded on the task row, once the task has ended."""

    def usage_of(task: str, timeout: float = 10) -> dict:
        task_id = str(uuid.UUID(hex=task.removeprefix("chatcmpl-"))) if task.startswith("chatcmpl-") else task
        deadline = time.monotonic() + timeout
        while (status := cluster.sql(f"SELECT status FROM handoff_tasks WHERE id = '{task_id}'")) in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, f"task {task_id} still {status} after {timeout} s"
            time.sleep(0.05)
        usage = cluster.sql(f"SELECT usage FROM handoff_tasks WHERE id = '{task_id}'")
        assert usage, f"task {task_id} ended ({status!r}) with no usage recorded"
        return json.loads(usage)

    return usage_of


@pytest.fixture(scope="session")
def cluster(request, log_dir, upstreams) -> Stack:
    admin_url = os.environ.get("HANDOFF_TEST_DATABASE_URL")
    if not admin_url:
        pytest.fail(
            "HANDOFF_TEST_DATABASE_URL is not set: run `make test` (scripts/test.sh), or start a cluster with "
            "`HANDOFF_PG_PORT=25439 scripts/postgres.sh start` and export "
            "HANDOFF_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:25439/postgres",
            pytrace=False,
        )
    cluster = Stack(
        admin_url,
        Ports(caddy=CADDY_PORT, api=API_PORT, sse=SSE_PORTS),
        log_dir=log_dir,
        bin_dir=Path(os.environ.get("HANDOFF_BIN_DIR", ROOT / ".build" / "debug")).resolve(),
        prefix="handoff_e2e",
    )
    cluster.create_database()
    request.config.stash[CLUSTER] = cluster
    try:
        try:
            cluster.start_services(
                settings={"HANDOFF_DB_POOL_SIZE": str(POOL_SIZE), "HANDOFF_MODELS_FILE": str(upstreams.catalogue_file)},
                worker_settings={"HANDOFF_DEMO_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS), "STUB_API_KEY": STUB_API_KEY},
            )
            deadline = time.monotonic() + START_TIMEOUT
            cluster.wait_healthy(deadline)
            cluster.wait_routed(deadline)
        except (RuntimeError, OSError) as error:  # the process logs follow in the terminal summary
            raise pytest.fail.Exception(f"the system did not start: {error}", pytrace=False) from None
        yield cluster
    finally:
        cluster.stop()
        cluster.drop_database()


@pytest.fixture(scope="session")
def keyed(cluster) -> Keyed:
    """Two keyed API servers on the session's database (same secret and settings, HANDOFF_AUTH=required, small input
    limits) and a Caddy that balances over both, in front of the session's SSE replicas. Session-scoped: started by
    the first test that asks, stopped (and removed from cluster.processes and cluster.commands) before the cluster."""
    cli = KeysCLI(cluster.bin_dir / "handoff-api", cluster.database_url)
    argv, settings = cluster.commands["api"]
    started: list[str] = []
    try:
        try:
            for port in KEYED_API_PORTS:
                name = f"api-keyed-{port}"
                cluster.start(
                    name,
                    argv,
                    {
                        **settings,
                        "HANDOFF_AUTH": "required",
                        "HANDOFF_API_PORT": str(port),
                        "HANDOFF_MAX_MESSAGES": str(MAX_MESSAGES),
                        "HANDOFF_MAX_PROMPT_CHARS": str(MAX_PROMPT_CHARS),
                    },
                )
                started.append(name)
            caddy_argv, caddy_settings = cluster.commands["caddy"]
            cluster.start(
                "caddy-keyed",
                caddy_argv,
                {
                    **caddy_settings,
                    "HANDOFF_CADDY_PORT": str(KEYED_CADDY),
                    "HANDOFF_API_UPSTREAM": " ".join(f"127.0.0.1:{port}" for port in KEYED_API_PORTS),
                    "XDG_DATA_HOME": str(cluster.log_dir / "xdg-data-keyed"),
                    "XDG_CONFIG_HOME": str(cluster.log_dir / "xdg-config-keyed"),
                },
            )
            started.append("caddy-keyed")
            deadline = time.monotonic() + START_TIMEOUT
            for port in KEYED_API_PORTS:
                wait_until(f"/healthz on port {port}", cluster, deadline, lambda port=port: healthy(port))
            probe = cli.create(unique("probe"))
            wait_until(
                "a keyed stream through the keys' Caddy", cluster, deadline, lambda: keyed_one_token(probe, KEYED_CADDY)
            )
        except (RuntimeError, OSError, AssertionError) as error:
            raise pytest.fail.Exception(f"the keyed API servers did not start: {error}", pytrace=False) from None
        yield Keyed(cli, cluster)
    finally:
        stop_processes(cluster, started)


def pytest_configure(config):
    config.addinivalue_line("markers", "run_last: run after every other test (pytest_collection_modifyitems)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Moves the tests marked run_last to the end of the session, whatever the order of the files on the command line
    or of any other plugin's reordering (trylast: this runs after them). test_keys.py's check that no log file
    contains a key uses it: it checks every key in keys_e2e.KEYS_SEEN, which test_keys.py, test_limits.py and
    test_charges.py all add to, so it must come after all of them to check them all. A hook rather than a module that
    sorts last, because `pytest test_keys.py test_limits.py test_charges.py` runs the files in the order given; a
    test rather than a fixture's teardown, so that a leak is reported as that test's failure."""
    last = [item for item in items if item.get_closest_marker("run_last")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("run_last")] + last


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from faults import HEADER, RESULTS

    if RESULTS:
        terminalreporter.section("fault injection")
        terminalreporter.write_line(HEADER)
        for verdict in RESULTS:
            terminalreporter.write_line(verdict.row())
    cluster = config.stash.get(CLUSTER, None)
    if exitstatus != 0:
        if cluster is not None:
            terminalreporter.section("handoff process logs")
            terminalreporter.write_line(cluster.log_tails())
        elif (path := config.stash.get(LOG_DIR, None)) is not None:  # the system never started: the upstreams' logs
            terminalreporter.section("upstream process logs")
            for log in sorted(path.glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()[-40:]
                terminalreporter.write_line(f"----- {log.stem} (last {len(lines)} lines of {log}) -----")
                terminalreporter.write_line("\n".join(lines))
