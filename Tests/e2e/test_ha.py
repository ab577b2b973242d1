"""Issue 23's proof, the Postgres half: a Patroni pair (synchronous_mode, pg_rewind, a three-member etcd) behind
HAProxy, and a whole Handoff stack whose every connection, pools and LISTEN alike, goes through HAProxy. Mid-stream,
the primary's host freezes (SIGSTOP of its Patroni and every one of its Postgres processes: no FIN, no RST) or dies
(SIGKILL of the same); etcd, on hosts of its own in production, stays up. Patroni must promote the standby, HAProxy must lead there, every stream must end with
[DONE] and its whole answer (or a visible error, never a silent truncation, never a hang), every POST meanwhile must
get a 302 or a 503 with Retry-After (never a 500, never a task nobody asked for), and the old primary must come back
as the new one's synchronous standby (rewound if needed). Each scenario adds a row, with what was measured, to the
fault table printed at the end of the session."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from faults import RESULTS, Client
from ha_checks import assert_survived, fail_over, undisturbed_answers
from ha_e2e import ADMIN_URL, LOOPBACK, PORTS, Pair, RecordingClient
from handoff_stack import ROOT, Stack

STREAMS = 30  # resuming clients (EventSource-like), mid-stream when the fault comes
PLAIN = 10  # clients that do not resume (openai-python-like)
TOKENS = 600  # at 30 ms a token: 18 s of answer, longer than the failover
TOKEN_DELAY_MS = 30
POST_EVERY = 0.5  # a new POST every half second ...
POST_FOR = 20  # ... for 20 s after the fault
POST_TOKENS = 20
SETTINGS = {"HANDOFF_KEEPALIVE_SECONDS": "1"}  # a silent stream gets a keepalive each second: clients time out at 5
WORKER_SETTINGS = {"HANDOFF_DEMO_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS), "HANDOFF_WORKER_CONCURRENCY": "128"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pair = Pair(tmp_path_factory.mktemp("ha-pair-logs"))
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()


@pytest.fixture(scope="module")
def stack(pair, tmp_path_factory):
    bin_dir = Path(os.environ.get("HANDOFF_BIN_DIR", ROOT / ".build" / "debug")).resolve()
    stack = Stack(ADMIN_URL, PORTS, tmp_path_factory.mktemp("ha-logs"), bin_dir, prefix="handoff_ha")
    stack.create_database()
    try:
        # Every process, the LISTEN connections included, through HAProxy: the one endpoint.
        stack.start_services(
            settings={**SETTINGS, "HANDOFF_LISTEN_DATABASE_URL": stack.database_url}, worker_settings=WORKER_SETTINGS
        )
        stack.wait_healthy(time.monotonic() + 60)
        stack.wait_routed(time.monotonic() + 30)
        yield stack
    finally:
        stack.stop()
        try:
            stack.drop_database()
        except RuntimeError:
            pass  # the pair is stopped next anyway


def prompts() -> list[tuple[str, int, bool]]:
    """(prompt, max_tokens, resumes) of every client of a scenario; the same in both, so one undisturbed run serves."""
    streams = [(f"ha {i}", TOKENS, True) for i in range(STREAMS)]
    plain = [(f"ha plain {i}", TOKENS, False) for i in range(PLAIN)]
    posts = [(f"ha post {i}", POST_TOKENS, True) for i in range(int(POST_FOR / POST_EVERY) + 10)]
    return streams + plain + posts


@pytest.fixture(scope="module")
def undisturbed(stack) -> dict[str, tuple[str, list[str]]]:
    """Each prompt's answer on a healthy pair: what every client must get across a failover."""
    return undisturbed_answers([Client(max_tokens=t, prompt=p, port=PORTS.caddy) for p, t, _ in prompts()])


def freeze(pair: Pair, node: str) -> None:
    pair.ha("freeze", node)


def kill(pair: Pair, node: str) -> None:
    pair.ha("kill", node)


def test_1_the_primary_host_freezes(pair, stack, undisturbed):
    failover(pair, stack, undisturbed, "HA 1. the primary's host freezes (SIGSTOP), then wakes (SIGCONT)", freeze)


def test_2_the_primary_host_dies(pair, stack, undisturbed):
    failover(pair, stack, undisturbed, "HA 2. the primary's host dies (SIGKILL), then restarts", kill)


def failover(pair: Pair, stack: Stack, undisturbed: dict, scenario: str, fault) -> None:
    clients = [
        Client(max_tokens=tokens, prompt=prompt, resume=resumes, port=PORTS.caddy)
        for prompt, tokens, resumes in prompts()
        if not prompt.startswith("ha post")
    ]

    def recover(victim: str) -> None:
        """The old primary comes back: woken, or started again (by hand here; under make run-ha, its supervisor)."""
        if fault is freeze:
            pair.ha("thaw", victim)
        else:
            pair.start()

    seen = fail_over(
        pair,
        stack,
        scenario,
        clients,
        lambda victim: fault(pair, victim),
        recover,
        lambda n: RecordingClient(max_tokens=POST_TOKENS, prompt=f"ha post {n}", port=PORTS.caddy),
        int(POST_FOR / POST_EVERY),
        POST_EVERY,
        [(LOOPBACK, port) for port in (PORTS.api, *PORTS.sse)],
    )
    seen.verdict.scenario = f"{scenario}: {seen.measured()}"
    RESULTS.append(seen.verdict)
    print(f"\n{seen.verdict.row()}")
    assert_survived(stack, seen, undisturbed)


def test_pg_rewind_needs_wal_log_hints():
    """use_pg_rewind works only on a cluster with wal_log_hints or data checksums: both configurations carry both."""
    for node in ("pg1", "pg2"):
        text = (ROOT / "deploy" / "ha" / f"patroni-{node}.yml").read_text()
        assert re.search(r"use_pg_rewind: true", text) and "wal_log_hints: 'on'" in text and "data-checksums" in text
        assert re.search(r"synchronous_mode: true", text)
