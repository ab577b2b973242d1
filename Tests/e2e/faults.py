"""The fault-injection suite's machinery: a stack of its own (its own Postgres cluster, so it can be restarted; two
workers; two SSE replicas; Caddy), clients that resume and clients that do not, and the check of what each client
received against the stream table, the source of truth.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable

import httpx
from handoff_e2e import iter_sse
from handoff_stack import ROOT, Ports, Stack, healthy, wait_until

PG_PORT = 25440  # below the ephemeral port range, like every listening port of the tests (scripts/test.sh)
PORTS = Ports(caddy=19080, api=19081, sse=(19082, 19083))
ADMIN_URL = f"postgres://postgres@127.0.0.1:{PG_PORT}/postgres"
LEASE_SECONDS = 6
ABANDON_SECONDS = 2
DRAIN_SECONDS = 3
TOKEN_DELAY_MS = 20
READ_TIMEOUT = 5  # keepalives come every second: five silent seconds mean the connection is dead
SETTINGS = {
    "HANDOFF_LEASE_SECONDS": str(LEASE_SECONDS),
    "HANDOFF_ABANDON_SECONDS": str(ABANDON_SECONDS),
    "HANDOFF_SSE_DRAIN_SECONDS": str(DRAIN_SECONDS),
    "HANDOFF_KEEPALIVE_SECONDS": "1",
    "HANDOFF_WORKER_GRACE_SECONDS": "2",
    "HANDOFF_DB_TIMEOUT_MS": "1000",
}
WORKER_SETTINGS = {"HANDOFF_DEMO_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS), "HANDOFF_WORKER_CONCURRENCY": "128"}
WORKERS = ("worker-a", "worker-b")


def postgres(command: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "postgres.sh"), command],
        check=True,
        env={**os.environ, "HANDOFF_PG_PORT": str(PG_PORT)},
    )


def start_stack(log_dir: Path, bin_dir: Path) -> Stack:
    postgres("reset")
    postgres("start")
    stack = Stack(ADMIN_URL, PORTS, log_dir, bin_dir, prefix="handoff_faults")
    stack.create_database()
    stack.start_services(settings=SETTINGS, worker=False)
    common = stack.commands["api"][1]
    for name in WORKERS:
        stack.start_worker(common, WORKER_SETTINGS, name=name)
    stack.wait_healthy(time.monotonic() + 60)
    stack.wait_routed(time.monotonic() + 30)
    return stack


def restart_and_wait(stack: Stack, name: str) -> None:
    stack.restart(name)
    if name.startswith("sse-"):
        port = int(name.split("-")[1])
        wait_until(f"{name} healthy", stack, time.monotonic() + 30, lambda: healthy(port))
        stack.wait_routed(time.monotonic() + 30)


class Client:
    """One completion as a client lives it: POST /api/chat/completions, follow the 302, read to `[DONE]`.

    A resuming client reconnects after anything short of `[DONE]` (a dead connection, a clean end, a
    `stream_interrupted` event) with `Last-Event-ID`, as a browser's EventSource does. A non-resuming one behaves
    like openai-python: an error event is a visible failure, and a clean end without `[DONE]` is taken for the end —
    a silent truncation, which must never happen.
    """

    def __init__(
        self,
        max_tokens: int,
        resume: bool = True,
        prompt: str = "fault",
        stop_after: int | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ):
        self.host, self.port = host, port or PORTS.caddy  # Caddy: the suite's own, or another host's (Tests/multihost)
        self.body = {
            "model": "demo",
            "stream": True,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        self.resume = resume
        self.stop_after = stop_after
        self.task_id: str | None = None
        self.location: str | None = None
        self.events: list[tuple[int, str, float]] = []  # (id, data, arrival)
        self.done = False
        self.error: dict | None = None  # a final error event (worker_lost, ...), then [DONE]
        self.visible_failure = False  # a non-resuming client raised
        self.truncated = False  # a non-resuming client saw a clean end without [DONE]
        self.interruptions = 0
        self.reconnects = 0
        self.replica: str | None = None
        self.replicas: list[str] = []  # every replica that served this stream, in order
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> "Client":
        self.thread.start()
        return self

    def run(self, deadline: float | None = None) -> None:
        deadline = deadline or time.monotonic() + 90
        try:
            self.post(deadline)
            if self.location is None:  # a POST that got no hand-off (a subclass records why): nothing to follow
                return
            while time.monotonic() < deadline and not self.follow():
                if not self.resume:
                    return
                self.reconnects += 1
                time.sleep(0.1)
        finally:
            self.ended_at = time.monotonic()

    def post(self, deadline: float) -> None:
        while True:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=READ_TIMEOUT)
            try:
                connection.request(
                    "POST", "/api/chat/completions", json.dumps(self.body), {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                body = response.read()
                if response.status == 302:
                    self.location = response.getheader("Location")
                    self.task_id = json.loads(body)["task_id"]
                    return
                if response.status != 503 or time.monotonic() > deadline:
                    raise AssertionError(f"POST answered {response.status}: {body[:300]!r}")
            finally:
                connection.close()
            time.sleep(0.2)

    def follow(self) -> bool:
        """One connection to the stream; `True` once the client is finished with it.

        A resuming client reads with http.client, whose line iteration ends quietly however the response ends (it
        swallows an incomplete chunked body), and resumes after any end short of `[DONE]`. A non-resuming one reads
        with httpx, as openai-python does, which raises when the transfer is aborted (no terminating chunk): that
        is what tells a visible failure from a silent truncation."""
        headers = {"Accept": "text/event-stream"}
        if self.events:
            headers["Last-Event-ID"] = str(self.events[-1][0])
        if not self.resume:
            return self.follow_once(headers)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=READ_TIMEOUT)
        try:
            connection.request("GET", self.location, headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                response.read()
                return False
            return self.consume(response.getheader("X-Handoff-Replica"), iter_sse(response))
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def follow_once(self, headers: dict[str, str]) -> bool:
        try:
            with httpx.stream(
                "GET", f"http://{self.host}:{self.port}{self.location}", headers=headers, timeout=READ_TIMEOUT
            ) as response:
                if response.status_code != 200:
                    self.visible_failure = True
                    return True
                if not self.consume(response.headers.get("X-Handoff-Replica"), iter_sse(response.iter_lines())):
                    self.truncated = True  # a clean end without [DONE]
        except httpx.HTTPError:
            self.visible_failure = True  # an aborted transfer: the SDK raises
        return True

    @property
    def answer(self) -> tuple[str, list[str]]:
        """The text and the finish reasons of the events received, in order of their ids."""
        text, reasons = "", []
        for _, data, _ in sorted(self.events, key=lambda event: event[0]):
            for choice in json.loads(data).get("choices") or []:
                text += choice.get("delta", {}).get("content") or ""
                if choice.get("finish_reason"):
                    reasons.append(choice["finish_reason"])
        return text, reasons

    def consume(self, replica: str | None, events: Iterable[dict]) -> bool:
        """Reads one response's events; `True` once the client is finished with the stream."""
        self.replica = replica
        self.replicas.append(replica)
        for event in events:
            if event["data"] == "[DONE]":
                self.done = True
                return True
            data = json.loads(event["data"])
            if "error" in data:
                if data["error"]["code"] == "stream_interrupted":
                    self.interruptions += 1
                    if not self.resume:
                        self.visible_failure = True
                        return True
                    continue
                self.error = data["error"]
            if event["id"] is not None:
                self.events.append((int(event["id"]), event["data"], time.monotonic()))
            if self.stop_after is not None and len(self.events) >= self.stop_after:
                return True  # and never come back
        return False


def start_all(clients: list[Client], settle: float) -> float:
    """Starts the clients; returns once every one of them streams (so each is on a replica when the fault comes,
    however loaded the machine) and `settle` more seconds have passed."""
    for client in clients:
        client.start()
    deadline = time.monotonic() + 30
    while any(not client.replicas for client in clients) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(settle)
    return time.monotonic()


def is_stored(received: str | None, stored: str) -> bool:
    """Whether a received event is the one the table stores. The table leaves out what every chunk of a completion
    shares (Shared/Wire/Chat/ChunkFrame.swift: a content delta is stored as its text alone, any other chunk without
    its identity, anything else whole); the Swift tests prove that replicas render it back byte for byte, so here
    what was stored must be what the client got."""
    if received is None:
        return False
    if stored.startswith('"'):
        choices = json.loads(received).get("choices") or [{}]
        return choices[0].get("delta") == {"content": json.loads(stored)} and len(choices) == 1
    if stored.startswith((",", "}")):
        return received.startswith('{"id":') and received.endswith(stored)
    return received == stored


def table_events(stack: Stack, task_id: str) -> dict[int, str]:
    """The task's stored events by position, from the stream table (rows may overlap after a requeue)."""
    rows = json.loads(
        stack.sql(
            f"SELECT coalesce(json_agg(json_build_array(seq, events) ORDER BY seq), '[]') FROM handoff_stream "
            f"WHERE task_id = '{task_id}'"
        )
    )
    events: dict[int, str] = {}
    for seq, text in rows:
        batch = text.split("\n")
        for offset, event in enumerate(batch):
            events[seq - len(batch) + 1 + offset] = event
    return events


@dataclasses.dataclass
class Verdict:
    scenario: str
    streams: int
    lost: int = 0
    duplicated: int = 0
    hung: int = 0
    explicit_errors: int = 0
    silently_truncated: int = 0
    recover_seconds: float = 0.0

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.streams} | {self.lost} | {self.duplicated} | {self.hung} | "
            f"{self.explicit_errors} | {self.silently_truncated} | {self.recover_seconds:.1f} |"
        )


RESULTS: list[Verdict] = []  # printed as a table at the end of the test session

HEADER = (
    "| scenario | streams | lost | duplicated | hung | ended with an error event | silently truncated | "
    "max time to recover (s): longest silence a client lived through |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
)


def judge(stack: Stack, scenario: str, clients: list[Client], fault_at: float) -> Verdict:
    """Waits for every client, then compares what each received with the table."""
    deadline = time.monotonic() + 60
    for client in clients:
        client.thread.join(timeout=max(0.0, deadline - time.monotonic()))
    verdict = Verdict(scenario, len(clients))
    for client in clients:
        if client.thread.is_alive() or (client.resume and not client.done):
            verdict.hung += 1
            continue
        if client.truncated:
            verdict.silently_truncated += 1
        if client.error is not None or client.visible_failure:
            verdict.explicit_errors += 1
        received: dict[int, str] = {}
        for event_id, data, _ in client.events:
            if event_id in received:
                verdict.duplicated += 1
            received[event_id] = data
        if client.resume:
            truth = table_events(stack, client.task_id)
            verdict.lost += sum(1 for position, event in truth.items() if not is_stored(received.get(position), event))
        # The longest silence the client lived through after the fault: a reconnect, a rescue, an outage.
        ended = client.ended_at or time.monotonic()
        if ended > fault_at:
            moments = [fault_at, *(arrival for _, _, arrival in client.events if arrival > fault_at), ended]
            verdict.recover_seconds = max(verdict.recover_seconds, *(b - a for a, b in zip(moments, moments[1:])))
    return verdict
