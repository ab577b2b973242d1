"""What the hostile-client tests (test_hostile.py) share: the ports of their own API servers, the OpenAI error of an
answer, the checks that every process is still alive and that nothing was stored, and a Procfile's `api` line run by
a shell, as honcho runs it.

Everything is bounded in time, as in handoff_e2e: the servers have 30 s to answer and 15 s to stop."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

from handoff_stack import ROOT, Ports, Stack, healthy

HOSTILE_PORTS = Ports(caddy=18110, api=18111, sse=(18112,))
PROCFILE_API_PORT = 18113


def error_of(reply, status: int) -> dict:
    assert reply.status == status, (reply.status, reply.body[:500])
    return json.loads(reply.body)["error"]


def alive(stack: Stack) -> None:
    """Every process of the stack still runs."""
    stack.check_alive()


def answering(port: int) -> bool:
    try:
        return healthy(port)
    except OSError:  # not listening yet
        return False


def tasks_with(stack: Stack, marker: str) -> int:
    return int(stack.sql(f"SELECT count(*) FROM handoff_tasks WHERE request::text LIKE '%{marker}%'"))


@contextlib.contextmanager
def shell_api(command: str, env: dict[str, str], log_path: Path, port: int) -> Iterator[subprocess.Popen]:
    """`sh -c command` in the repository, as honcho runs a Procfile line, in a session of its own and logging to
    `log_path`: yields once it answers /healthz on `port`, then stops its whole process group."""
    log = open(log_path, "w")
    process = subprocess.Popen(
        ["sh", "-c", command],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not answering(port):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.1)
        yield process
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=15)
        # The shell is gone, but the API it started may still be shutting down, and answering on `port`: the next
        # caller's /healthz would reach it (CI: the next API's first request was then refused).
        gone_by = time.monotonic() + 15
        while time.monotonic() < gone_by:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        log.close()
