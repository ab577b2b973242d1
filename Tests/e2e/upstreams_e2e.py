"""The upstream processes of the session (started by conftest.py's `upstreams` fixture): the two stub servers
(upstream_stub.py, run as a script) and, when a collected test wants it, the real llama-server; what the stubs
recorded; and the stop of processes, the upstreams' own and those a fixture added to the session's stack."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from catalogue_e2e import LLAMA_ARGS, LLAMA_PORT, STUB_API_KEY, STUB_PORTS, TOOLS_TEMPLATE
from handoff_stack import ROOT, Stack, status, wait_until

LLAMA_HEALTH_TIMEOUT = 120
LLAMA_BUILD_TIMEOUT = 1500  # scripts/llama-server.sh builds the binary on first use (about 10 minutes on 2 cores)
PROCESS_STOP_TIMEOUT = 10


class Upstreams:
    """The upstream processes of the session: the two stubs and, when wanted, llama-server."""

    api_key = STUB_API_KEY  # in the worker's environment as STUB_API_KEY

    def __init__(self, log_dir: Path, catalogue_file: Path):
        self.log_dir = log_dir
        self.catalogue_file = catalogue_file
        self.processes: dict[str, subprocess.Popen] = {}
        self.llama_started_at: float | None = None
        self.llama_binary_was_built = True

    def requests(self, stub: str) -> list[dict]:
        """What stub `stub` (A or B) recorded: one entry per request it received."""
        connection = http.client.HTTPConnection("127.0.0.1", STUB_PORTS[stub], timeout=10)
        try:
            connection.request("GET", "/_stub/requests")
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def records(self, marker: str) -> list[dict]:
        """The requests, on either stub, whose body contains `marker` (tests put one in the prompt), oldest first."""
        found = [r for stub in STUB_PORTS for r in self.requests(stub) if marker in json.dumps(r.get("body"))]
        return sorted(found, key=lambda r: r["started"])

    def wait_records(self, marker: str, ready, timeout: float = 10) -> list[dict]:
        """Polls records(marker) until `ready(records)` is true; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.records(marker)
            if ready(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"the stubs' records for {marker} never got ready: {found}")
            time.sleep(0.05)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            # A session of its own, so a stop reaches the process and whatever it started (the llama build).
            self.processes[name] = subprocess.Popen(
                argv,
                env={**os.environ, **(env or {})},
                cwd=self.log_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def start_stubs(self) -> None:
        for name, port in STUB_PORTS.items():
            self.start(
                f"stub-{name}",
                [
                    sys.executable,
                    "-u",
                    str(Path(__file__).with_name("upstream_stub.py")),
                    "--port",
                    str(port),
                    "--name",
                    name,
                ],
            )
        deadline = time.monotonic() + 15
        for name, port in STUB_PORTS.items():
            self.wait(f"stub-{name}", lambda port=port: status(port, "/health") == 200, deadline)

    def start_llama(self) -> None:
        binary = subprocess.run(
            [str(ROOT / "scripts" / "llama-server.sh"), "paths"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split()[0]
        self.llama_binary_was_built = os.access(binary, os.X_OK)
        template = self.log_dir / "smollm2-tools.jinja"
        template.write_text(TOOLS_TEMPLATE)
        self.start(
            "llama-server",
            [str(ROOT / "scripts" / "llama-server.sh"), "run", str(LLAMA_PORT)],
            {"HANDOFF_LLAMA_ARGS": LLAMA_ARGS.format(template=template)},
        )
        self.llama_started_at = time.monotonic()

    def wait_llama(self) -> str:
        """Until llama-server's /health answers 200; returns its base URL (without /v1)."""
        if self.llama_started_at is None:
            self.start_llama()
        budget = LLAMA_HEALTH_TIMEOUT if self.llama_binary_was_built else LLAMA_BUILD_TIMEOUT
        # Started with the session, it may have been up for long when the first test asks: probe at least once more.
        deadline = max(self.llama_started_at + budget, time.monotonic() + 10)
        self.wait("llama-server", lambda: status(LLAMA_PORT, "/health") == 200, deadline)
        return f"http://127.0.0.1:{LLAMA_PORT}"

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"upstreams exited early (name: exit status): {dead}; logs in {self.log_dir}")

    def wait(self, name: str, probe, deadline: float) -> None:
        wait_until(name, self, deadline, probe)

    def stop(self) -> None:
        """SIGTERM to each process group, SIGKILL to whatever is left after PROCESS_STOP_TIMEOUT seconds."""
        for process in self.processes.values():
            if process.poll() is None:
                signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + PROCESS_STOP_TIMEOUT
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} ignored SIGTERM for {PROCESS_STOP_TIMEOUT} s: SIGKILL")
                signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
        self.processes.clear()


def signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the group that start_new_session made: its id is the process's
    except (ProcessLookupError, PermissionError):
        pass


def stop_processes(stack: Stack, names: list[str]) -> None:
    """SIGTERM, then SIGKILL after 10 s, to processes a fixture added to `stack`; forgets them."""
    for name in names:
        process = stack.processes.get(name)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name in names:
        process = stack.processes.pop(name, None)
        stack.commands.pop(name, None)
        if process is None:
            continue
        try:
            process.wait(timeout=PROCESS_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
