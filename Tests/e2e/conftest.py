"""Starts the whole system once per session: a fresh database, the API server, a worker, two SSE replicas and
Caddy in front, on ports of their own (18080-18083), so a running `make run` (8080-8083) is untouched."""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from handoff_e2e import (API_PORT, CADDY_PORT, POOL_SIZE, SSE_PORTS, TOKEN_DELAY_MS, post_and_follow, psql,
                         request)

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60
STOP_TIMEOUT = 10
LOG_TAIL_LINES = 40
CLUSTER = pytest.StashKey["Cluster"]()


@dataclasses.dataclass
class Cluster:
    admin_url: str
    database: str
    database_url: str
    secret: str
    log_dir: Path
    processes: dict[str, subprocess.Popen] = dataclasses.field(default_factory=dict)

    def sql(self, statement: str) -> str:
        return psql(self.database_url, statement)

    def connection_counts(self) -> dict[str, int]:
        """Open Postgres connections of the system, by application_name (psql itself uses the admin database)."""
        out = psql(self.admin_url, "SELECT application_name, count(*) FROM pg_stat_activity "
                                   f"WHERE datname = '{self.database}' GROUP BY 1")
        return {name: int(count) for name, count in (line.rsplit("|", 1) for line in out.splitlines() if line)}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")
        # Settings of a developer's shell (HANDOFF_WORKER_CONCURRENCY, ...) must not change what is tested.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_") and k != "DATABASE_URL"}
        self.processes[name] = subprocess.Popen(argv, env={**inherited, **env}, cwd=self.log_dir, stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"processes exited early (name: exit status): {dead}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} ignored SIGTERM for {STOP_TIMEOUT} s: SIGKILL")
                process.kill()
                process.wait(timeout=5)

    def log_tails(self) -> str:
        parts = []
        for name in self.processes:
            lines = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            parts.append(f"----- {name} (last {len(lines)} lines of {self.log_dir / name}.log) -----\n"
                         + "\n".join(lines))
        return "\n".join(parts)


def wait_until(what: str, cluster: Cluster, deadline: float, probe) -> None:
    last: object = None
    while time.monotonic() < deadline:
        cluster.check_alive()
        try:
            if probe():
                return
        except Exception as error:  # not up yet
            last = error
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT} s (last error: {last!r})")


def healthy(port: int) -> bool:
    reply = request("GET", "/healthz", port=port, timeout=2)
    return reply.status == 200 and reply.body.strip() == b"ok"


def start_cluster(cluster: Cluster) -> None:
    bin_dir = Path(os.environ.get("HANDOFF_BIN_DIR", ROOT / ".build" / "debug"))
    common = {"DATABASE_URL": cluster.database_url, "HANDOFF_SECRET": cluster.secret,
              "HANDOFF_DB_POOL_SIZE": str(POOL_SIZE), "HANDOFF_LOG_LEVEL": os.environ.get("HANDOFF_LOG_LEVEL", "info"),
              "HANDOFF_SECRET_FILE": str(cluster.log_dir / "unused-secret")}
    cluster.start("api", [str(bin_dir / "handoff-api")], {**common, "HANDOFF_API_PORT": str(API_PORT)})
    cluster.start("worker", [str(bin_dir / "handoff-worker")],
                  {**common, "HANDOFF_DEMO_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS)})
    for port in SSE_PORTS:
        cluster.start(f"sse-{port}", [str(bin_dir / "handoff-sse")], {**common, "HANDOFF_SSE_PORT": str(port)})
    cluster.start("caddy", ["caddy", "run", "--config", str(ROOT / "Caddyfile"), "--adapter", "caddyfile"], {
        "HANDOFF_CADDY_PORT": str(CADDY_PORT), "HANDOFF_API_UPSTREAM": f"127.0.0.1:{API_PORT}",
        "HANDOFF_SSE_UPSTREAMS": " ".join(f"127.0.0.1:{port}" for port in SSE_PORTS),
        "XDG_DATA_HOME": str(cluster.log_dir / "xdg-data"), "XDG_CONFIG_HOME": str(cluster.log_dir / "xdg-config")})

    deadline = time.monotonic() + START_TIMEOUT
    for port in (API_PORT, *SSE_PORTS):
        wait_until(f"/healthz on port {port}", cluster, deadline, lambda: healthy(port))
    # Ready means: a real stream works through Caddy, and Caddy's health checks have let it reach both replicas.
    seen: set[str] = set()

    def both_replicas_stream() -> bool:
        _, stream = post_and_follow({"model": "demo", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
                                    timeout=10)
        if stream.done:
            seen.add(stream.replica)
        return len(seen) == len(SSE_PORTS)

    wait_until("a stream through Caddy from each replica", cluster, deadline, both_replicas_stream)


@pytest.fixture(scope="session")
def cluster(request, tmp_path_factory) -> Cluster:
    admin_url = os.environ.get("HANDOFF_TEST_DATABASE_URL")
    if not admin_url:
        pytest.fail("HANDOFF_TEST_DATABASE_URL is not set: run `make test` (scripts/test.sh), or start a cluster with "
                    "`HANDOFF_PG_PORT=55439 scripts/postgres.sh start` and export "
                    "HANDOFF_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:55439/postgres", pytrace=False)
    database = f"handoff_e2e_{secrets.token_hex(6)}"
    parts = urllib.parse.urlsplit(admin_url)
    cluster = Cluster(admin_url=admin_url, database=database,
                      database_url=urllib.parse.urlunsplit(parts._replace(path=f"/{database}")),
                      secret=secrets.token_hex(32), log_dir=tmp_path_factory.mktemp("handoff-logs"))
    psql(admin_url, f"CREATE DATABASE {database}")
    request.config.stash[CLUSTER] = cluster
    try:
        try:
            start_cluster(cluster)
        except (RuntimeError, OSError) as error:  # the process logs follow in the terminal summary
            raise pytest.fail.Exception(f"the system did not start: {error}", pytrace=False) from None
        yield cluster
    finally:
        cluster.stop()
        psql(admin_url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    cluster = config.stash.get(CLUSTER, None)
    if cluster is not None and exitstatus != 0:
        terminalreporter.section("handoff process logs")
        terminalreporter.write_line(cluster.log_tails())
