"""Handoff spread over six hosts (network namespaces, hosts.py), each process listening on its own host's address
and reaching the others by address:

    A 10.77.0.11  Postgres (its own cluster, run as the postgres user, data under /tmp)
    B 10.77.0.12  handoff-api :8081 and handoff-worker (operations :8084)
    C 10.77.0.13  handoff-sse :8082
    D 10.77.0.14  handoff-sse :8082
    E 10.77.0.15  Caddy :8080 (the repository's Caddyfile)
    F 10.77.0.16  the clients (threads of the test process, moved into F with setns)
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1] / "scripts"), str(HERE.parent / "e2e")]
from faults import SETTINGS, Client, Verdict  # noqa: E402
from handoff_stack import CADDY, ROOT, Ports, Stack, healthy, stream_one_token, wait_until  # noqa: E402
from handoff_stack import status as http_status  # noqa: E402
from hosts import Hosts  # noqa: E402

OCTETS = {"A": 11, "B": 12, "C": 13, "D": 14, "E": 15, "F": 16}
PG_PORT = 5432
API_PORT = 8081
WORKER_PORT = 8084
SSE_PORT = 8082  # the same port on C and D: they are different hosts
CADDY_PORT = 8080
SSE_HOSTS = ("C", "D")
# Longer than the fault suite's 6 s: a 5 s partition of the worker from Postgres must be shorter than a lease minus
# one renewal interval (10 - 10/3 s), or the worker's own rescuer would end its tasks with worker_lost after it.
LEASE_SECONDS = 10
TOKEN_DELAY_MS = 20
SETTINGS = {**SETTINGS, "HANDOFF_LEASE_SECONDS": str(LEASE_SECONDS)}
WORKER_SETTINGS = {"HANDOFF_DEMO_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS), "HANDOFF_WORKER_CONCURRENCY": "160"}
# The Caddyfile's health checks: a replica is checked every 2 s with a 1 s timeout.
HEALTH_INTERVAL, HEALTH_TIMEOUT = 2, 1
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1]

RESULTS: list[Verdict] = []  # printed at the end of the session, as faults.HEADER's table
NOTES: list[str] = []  # measurements printed under it


class Cluster(Stack):
    """The processes of the six hosts. Only Postgres runs outside `Stack.processes`: it is stopped last.

    `admin_url` names another Postgres (a Patroni pair behind HAProxy, test_postgres_failover.py); psql then runs on
    `sql_host`, a host that reaches it."""

    def __init__(self, hosts: Hosts, log_dir: Path, bin_dir: Path, admin_url: str | None = None, sql_host: str = "A"):
        self.hosts = hosts
        self.addr = {host: hosts.address(host) for host in hosts.octets}
        super().__init__(
            admin_url or f"postgres://postgres@{self.addr['A']}:{PG_PORT}/postgres",
            Ports(caddy=CADDY_PORT, api=API_PORT, sse=(SSE_PORT, SSE_PORT)),
            log_dir,
            bin_dir,
            prefix="handoff_multihost",
        )
        self.sql_host = sql_host
        self.pg_data: Path | None = None
        self.postgres: subprocess.Popen | None = None
        self.caddy_log = log_dir / "caddy.log"

    # Postgres on A

    def start_postgres(self) -> None:
        self.pg_data = Path(tempfile.mkdtemp(prefix="hmh-pg-", dir="/tmp"))  # the postgres user cannot enter /root
        shutil.chown(self.pg_data, "postgres", "postgres")
        self.pg_data.chmod(0o700)
        as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        self.hosts.run(
            "A",
            [
                *as_postgres,
                str(PG_BIN / "initdb"),
                "-D",
                str(self.pg_data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
            timeout=120,
        )
        with open(self.pg_data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.hosts.subnet}.0/24 trust\n")
        log = open(self.log_dir / "postgres.log", "ab")
        # setpriv and `ip netns exec` both exec: the pid is the postmaster's own.
        self.postgres = subprocess.Popen(
            self.hosts.argv(
                "A",
                [
                    *as_postgres,
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(self.pg_data),
                    "-h",
                    self.addr["A"],
                    "-p",
                    str(PG_PORT),
                    "-k",
                    str(self.pg_data),
                    "-c",
                    "max_connections=300",
                ],
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd="/tmp",
        )
        log.close()
        wait_until(
            "Postgres on A",
            self,
            time.monotonic() + 60,
            lambda: (
                self.hosts.run(
                    "A", [str(PG_BIN / "pg_isready"), "-h", self.addr["A"], "-p", str(PG_PORT)], check=False
                ).returncode
                == 0
            ),
        )

    def stop_postgres(self) -> None:
        if self.postgres is not None and self.postgres.poll() is None:
            self.postgres.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.postgres.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.postgres.kill()
                self.postgres.wait(timeout=5)
        if self.pg_data is not None:
            shutil.rmtree(self.pg_data, ignore_errors=True)

    def check_alive(self) -> None:
        super().check_alive()
        if self.postgres is not None and self.postgres.poll() is not None:
            raise RuntimeError(f"postgres on A exited early ({self.postgres.returncode})")

    def psql(self, url: str, statement: str) -> str:
        """psql on `sql_host`."""
        return self.hosts.run(
            self.sql_host, ["psql", url, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-tA", "-c", statement]
        ).stdout.strip()

    def create_database(self) -> None:
        self.psql(self.admin_url, f"CREATE DATABASE {self.database}")

    def drop_database(self) -> None:
        self.psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def sql(self, statement: str) -> str:
        return self.psql(self.database_url, statement)

    # The services on B, C, D and E

    def start_on(self, host: str, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.start(name, self.hosts.argv(host, argv), env)

    def start_services(self, settings=None, worker_settings=None, worker=True) -> None:
        """The API and the worker on B, the replicas on C and D, Caddy on E: SETTINGS and WORKER_SETTINGS, with
        `settings` and `worker_settings` on top."""
        common = {
            "DATABASE_URL": self.database_url,
            "HANDOFF_SECRET": self.secret,
            "HANDOFF_AUTH": "off",
            "HANDOFF_AUTH_OFF_ALLOW_NETWORK": "1",
            "HANDOFF_LOG_LEVEL": "info",
            "HANDOFF_SECRET_FILE": str(self.log_dir / "unused-secret"),
            **SETTINGS,
            **(settings or {}),
        }
        self.start_on(
            "B",
            "api",
            [str(self.bin_dir / "handoff-api")],
            {**common, "HANDOFF_API_HOST": self.addr["B"], "HANDOFF_API_PORT": str(API_PORT)},
        )
        self.start_on(
            "B",
            "worker",
            [str(self.bin_dir / "handoff-worker")],
            {
                **common,
                **WORKER_SETTINGS,
                **(worker_settings or {}),
                "HANDOFF_WORKER_ID": "worker-b",
                "HANDOFF_WORKER_HOST": self.addr["B"],
                "HANDOFF_WORKER_PORT": str(WORKER_PORT),
            },
        )
        for host in SSE_HOSTS:
            self.start_on(
                host,
                f"sse-{host}",
                [str(self.bin_dir / "handoff-sse")],
                {**common, "HANDOFF_SSE_HOST": self.addr[host], "HANDOFF_SSE_PORT": str(SSE_PORT)},
            )
        self.start_on(
            "E",
            "caddy",
            [str(CADDY), "run", "--config", str(ROOT / "Caddyfile"), "--adapter", "caddyfile"],
            {
                "HANDOFF_CADDY_BIND": self.addr["E"],
                "HANDOFF_CADDY_PORT": str(CADDY_PORT),
                "HANDOFF_API_UPSTREAM": f"{self.addr['B']}:{API_PORT}",
                "HANDOFF_SSE_UPSTREAMS": " ".join(f"{self.addr[host]}:{SSE_PORT}" for host in SSE_HOSTS),
                "HANDOFF_WEB_ROOT": str(ROOT / "web"),
                "XDG_DATA_HOME": str(self.log_dir / "xdg-data"),
                "XDG_CONFIG_HOME": str(self.log_dir / "xdg-config"),
            },
        )

    def replica(self, host: str) -> str:
        """What `X-Handoff-Replica` says for the replica on `host`."""
        return f"{self.addr[host]}:{SSE_PORT}"

    def wait_ready(self, deadline: float) -> None:
        """From F: every process answers /healthz at its host's address, then a stream through Caddy on E has
        completed on each replica."""
        targets = [("B", API_PORT), ("B", WORKER_PORT), *((host, SSE_PORT) for host in SSE_HOSTS)]
        for host, port in targets:
            wait_until(
                f"/healthz of {host}:{port}",
                self,
                deadline,
                lambda: self.hosts.call("F", healthy, port, self.addr[host]),
            )
        self.wait_streams_on(set(SSE_HOSTS), deadline)

    def wait_streams_on(self, hosts: set[str], deadline: float) -> float:
        """Until one-token streams through Caddy have completed on every replica of `hosts`; returns the seconds."""
        started = time.monotonic()
        wanted = {self.replica(host) for host in hosts}
        seen: set[str] = set()

        def one() -> bool:
            seen.add(self.hosts.call("F", stream_one_token, CADDY_PORT, self.addr["E"]))
            return wanted <= seen

        wait_until(f"streams through Caddy on {sorted(hosts)}", self, deadline, one)
        return time.monotonic() - started

    def status(self, host: str, port: int, path: str) -> int | None:
        """The status of GET `path` on host:port, asked from F (None: no answer within 2 s)."""
        try:
            return self.hosts.call("F", lambda: http_status(port, path, host=self.addr[host]))
        except OSError:
            return None

    def caddy_events(self, message: str, since: float) -> list[tuple[float, str]]:
        """(wall time, upstream) of each line of Caddy's log with this message (`host is down`, `host is up`)."""
        found = []
        for line in self.caddy_log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == message and entry.get("ts", 0) >= since:
                found.append((entry["ts"], entry.get("host", "")))
        return found


class HostClient(Client):
    """faults.Client on host F, through Caddy on E: its thread enters F's namespace before its first socket."""

    def __init__(self, cluster: Cluster, max_tokens: int, **options):
        super().__init__(max_tokens, host=cluster.addr["E"], port=CADDY_PORT, **options)
        self.hosts = cluster.hosts
        self.failure: str | None = None

    def run(self, deadline: float | None = None) -> None:
        self.hosts.enter("F")
        try:
            super().run(deadline)
        except Exception as error:  # a POST that timed out or got neither 302 nor 503: the client gave up
            self.failure = repr(error)
            raise


class Prober:
    """From F, a new short stream through Caddy every `every` seconds, each on a thread of its own. Each probe
    records when it started (monotonic), how long its POST and its GET took, the GET's status, the replica that
    served it and whether it ended with [DONE]."""

    def __init__(self, cluster: Cluster, every: float = 0.25, max_tokens: int = 3):
        self.cluster = cluster
        self.every = every
        self.body = json.dumps(
            {
                "model": "demo",
                "stream": True,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": "probe"}],
            }
        )
        self.probes: list[dict] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.threads: list[threading.Thread] = []

    def start(self) -> "Prober":
        self.thread.start()
        return self

    def loop(self) -> None:
        while not self.stopped.is_set():
            probe = {"started": time.monotonic(), "done": False, "replica": None, "status": None}
            self.probes.append(probe)
            thread = threading.Thread(target=self.one, args=(probe,), daemon=True)
            thread.start()
            self.threads.append(thread)
            self.stopped.wait(self.every)

    def one(self, probe: dict) -> None:
        self.cluster.hosts.enter("F")
        connection = http.client.HTTPConnection(self.cluster.addr["E"], CADDY_PORT, timeout=15)
        try:
            connection.request("POST", "/api/chat/completions", self.body, {"Content-Type": "application/json"})
            handoff = connection.getresponse()
            handoff.read()
            probe["posted"] = time.monotonic() - probe["started"]
            if handoff.status != 302:
                probe["status"] = f"POST {handoff.status}"
                return
            connection.request("GET", handoff.getheader("Location"))
            stream = connection.getresponse()
            probe["status"] = stream.status
            probe["headers"] = time.monotonic() - probe["started"]
            probe["replica"] = stream.getheader("X-Handoff-Replica")
            probe["done"] = stream.status == 200 and stream.read().endswith(b"data: [DONE]\n\n")
        except (OSError, http.client.HTTPException) as error:
            probe["status"] = repr(error)
        finally:
            probe["took"] = time.monotonic() - probe["started"]
            connection.close()

    def stop(self, wait: float = 20) -> list[dict]:
        """Starts no more probes; waits up to `wait` seconds in all for those under way (the rest lack "took")."""
        self.stopped.set()
        self.thread.join(timeout=5)
        deadline = time.monotonic() + wait
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return [dict(probe) for probe in self.probes]
