"""Issue 10's proof, end to end, for the charge when a task ends, by outcome: a succeeded task is charged its usage,
a cancelled one what it streamed (prompt included), one that failed before any token nothing, an abandoned one what it
streamed, and one whose worker was lost the prompt estimate and the content it streamed.

The first three run on conftest.py's `keyed` API servers. The two outcomes that need a short lease or a short
abandonment grace (a worker lost, a stream abandoned) run on a small stack of their own instead (`fault_stack`: API
18087, SSE 18088, two workers), because every worker on a database may claim any task and the session's lease (10 s)
and grace (30 s) are too slow to wait for.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time

import pytest
from handoff_e2e import GOLDEN, README_BODY
from handoff_stack import Ports, Stack, wait_until
from keys_e2e import (
    CADDY,
    KeysCLI,
    OpenStream,
    content_chunks,
    demo,
    encoded,
    hand_off,
    post,
    read_whole,
    unique,
    wait_ended,
)
from limits_e2e import fresh_minute, reservation

FAULTS = Ports(caddy=18089, api=18087, sse=(18088,))  # no Caddy: the fault tests talk to the API and SSE directly
FAULT_WORKERS = ("keys-faults-worker-a", "keys-faults-worker-b")
CEILING = 1024  # HANDOFF_RESERVE_MAX_TOKENS, left at its default
LEASE_SECONDS = 3
ABANDON_SECONDS = 1
WATCH_REFRESH = 5  # StreamLog.watchRefresh: how stale a watched task's watched_at may be
START_TIMEOUT = 60


@dataclasses.dataclass
class FaultStack:
    stack: Stack
    cli: KeysCLI


@pytest.fixture(scope="module")
def fault_stack(cluster) -> FaultStack:
    """A database of its own with a keyed API, one SSE replica and two workers with a 3 s lease and a 1 s abandonment
    grace. Its logs go beside the session's (names start with keys-faults-)."""
    stack = Stack(cluster.admin_url, FAULTS, cluster.log_dir, cluster.bin_dir, prefix="handoff_keys")
    stack.create_database()
    common = {
        "DATABASE_URL": stack.database_url,
        "HANDOFF_SECRET": stack.secret,
        "HANDOFF_SECRET_FILE": str(cluster.log_dir / "unused-secret"),
        "HANDOFF_LOG_LEVEL": os.environ.get("HANDOFF_LOG_LEVEL", "info"),
    }
    try:
        try:
            stack.start(
                "keys-faults-api",
                [str(stack.bin_dir / "handoff-api")],
                {**common, "HANDOFF_AUTH": "required", "HANDOFF_API_PORT": str(FAULTS.api)},
            )
            for port in FAULTS.sse:
                stack.start(
                    f"keys-faults-sse-{port}",
                    [str(stack.bin_dir / "handoff-sse")],
                    {**common, "HANDOFF_SSE_PORT": str(port), "HANDOFF_KEEPALIVE_SECONDS": "1"},
                )
            deadline = time.monotonic() + START_TIMEOUT
            stack.wait_healthy(deadline)  # the API has migrated the database
            for name in FAULT_WORKERS:
                stack.start_worker(
                    common,
                    {
                        "HANDOFF_LEASE_SECONDS": str(LEASE_SECONDS),
                        "HANDOFF_ABANDON_SECONDS": str(ABANDON_SECONDS),
                        "HANDOFF_DEMO_TOKEN_DELAY_MS": "20",
                    },
                    name=name,
                )
            for name in FAULT_WORKERS:
                log = cluster.log_dir / f"{name}.log"
                wait_until(f"{name} started", stack, deadline, lambda log=log: "worker started" in log.read_text())
        except (RuntimeError, OSError) as error:
            raise pytest.fail.Exception(f"the fault stack did not start: {error}", pytrace=False) from None
        yield FaultStack(stack, KeysCLI(stack.bin_dir / "handoff-api", stack.database_url))
    finally:
        stack.stop()
        stack.drop_database()


# ----- charged when the task ends, by outcome --------------------------------------------------------------------


def test_a_succeeded_task_is_charged_its_usage(keyed, task_usage):
    fresh_minute(10)
    key = keyed.key("succeeded", tokens_per_minute=100_000)
    handoff = hand_off(README_BODY.encode(), key, CADDY)
    assert keyed.cli.usage_row(key)["reserved_tokens"] == reservation(README_BODY, None, CEILING), (
        "the README's request has no max_tokens: the ceiling is reserved"
    )
    assert read_whole(handoff.location, key.auth, CADDY).text == GOLDEN
    assert task_usage(handoff.task_id)["total_tokens"] == 77
    row = keyed.cli.usage_row(key)
    assert (row["reserved_tokens"], row["tokens_this_minute"], row["tokens_today"]) == (0, 77, 77), row


def test_a_cancelled_task_is_charged_what_it_streamed_prompt_included(keyed, task_usage):
    fresh_minute(10)
    key = keyed.key("cancelled", tokens_per_minute=100_000)
    body = encoded(demo("stop me after a few words", max_tokens=500))
    handoff = hand_off(body, key, CADDY)
    assert keyed.cli.usage_row(key)["reserved_tokens"] == reservation(body, 500)
    with OpenStream(handoff.location, key.auth, CADDY) as stream:
        assert stream.status == 200
        stream.read_content(5)
        cancelled = post(
            f"/api/chat/completions/{handoff.completion_id}/cancel?token={handoff.token}", None, key, CADDY
        )
        assert cancelled.status == 200, cancelled.body
        stream.read_to_end()
    assert stream.finish_reasons == ["cancelled"]
    usage = task_usage(handoff.task_id)
    assert 5 <= usage["completion_tokens"] < 500 and usage["total_tokens"] > usage["prompt_tokens"] > 0, usage
    row = keyed.cli.usage_row(key)
    assert (row["reserved_tokens"], row["tokens_this_minute"], row["tokens_today"]) == (
        0,
        usage["total_tokens"],
        usage["total_tokens"],
    ), (row, usage)


def test_a_task_that_failed_before_any_token_is_charged_nothing(keyed):
    body = encoded(
        {
            "model": "stub-fail-404",
            "stream": True,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "fails before its first token"}],
        }
    )
    each = reservation(body, 50)
    key = keyed.key("failed", tokens_per_day=each)  # room for exactly one reservation, and for nothing more
    for attempt in range(2):  # the second fits only if the first was charged 0 and its reservation released
        handoff = hand_off(body, key, CADDY)
        stream = read_whole(handoff.location, key.auth, CADDY)
        assert stream.errors and not content_chunks(stream.chunks), stream.chunks
        status, _ = wait_ended(keyed.cluster, handoff.task_id)
        assert status == "failed"
        row = keyed.cli.usage_row(key)
        assert (row["reserved_tokens"], row["tokens_today"]) == (0, 0), (attempt, row)


def test_an_abandoned_task_is_charged_what_it_streamed(fault_stack):
    stack, cli = fault_stack.stack, fault_stack.cli
    key = cli.create(unique("abandoned"), tokens_per_day=1_000_000)
    body = encoded(demo("nobody watches this one for long", max_tokens=2000))
    handoff = hand_off(body, key, FAULTS.api)
    assert (
        cli.usage_row(key)["reserved_tokens"] == reservation(body, 2000, CEILING) == math.ceil(len(body) / 4) + CEILING
    ), "max_tokens above the ceiling reserves the ceiling"
    with OpenStream(handoff.location, None, FAULTS.sse[0]) as stream:  # a browser's EventSource, then gone
        assert stream.status == 200
        stream.read_content(5)
    status, usage = wait_ended(stack, handoff.task_id, timeout=ABANDON_SECONDS + WATCH_REFRESH + LEASE_SECONDS + 10)
    assert status == "cancelled"
    assert 5 <= usage["completion_tokens"] < 1000 and usage["total_tokens"] > usage["prompt_tokens"] > 0, usage
    row = cli.usage_row(key)
    assert (row["reserved_tokens"], row["tokens_today"]) == (0, usage["total_tokens"]), (row, usage)


def test_a_lost_workers_answer_is_continued_and_charged_once(fault_stack):
    """The worker dies mid-story: the rescue requeues the task with its partial answer, the other worker continues it
    in the same stream, and the key is charged the whole answer's usage once, its reservation released."""
    stack, cli = fault_stack.stack, fault_stack.cli
    key = cli.create(unique("lost"), tokens_per_day=1_000_000)
    body = encoded(demo("the worker dies mid-story", max_tokens=300))
    handoff = hand_off(body, key, FAULTS.api)
    victim = None
    try:
        with OpenStream(handoff.location, key.auth, FAULTS.sse[0], timeout=40) as stream:
            assert stream.status == 200
            stream.read_content(10)
            assert cli.usage_row(key)["reserved_tokens"] == reservation(body, 300)
            holder = stack.sql(f"SELECT worker_id FROM handoff_tasks WHERE id = '{handoff.task_id}'")
            [victim] = [name for name in FAULT_WORKERS if f"-{stack.pid(name)}-" in holder]
            stack.signal(victim, signal.SIGKILL).wait(timeout=5)
            stream.read_to_end()  # the other worker continues it once the lease expires
        assert stream.errors == [], stream.errors
        status, _ = wait_ended(stack, handoff.task_id)
        assert status == "succeeded"
        assert stack.sql(f"SELECT continuations FROM handoff_tasks WHERE id = '{handoff.task_id}'") == "1"
        assert len(content_chunks(stream.chunks)) == 300, "the whole answer, continued"
        usage = json.loads(stack.sql(f"SELECT usage FROM handoff_tasks WHERE id = '{handoff.task_id}'"))
        assert usage["completion_tokens"] == 300, usage
        row = cli.usage_row(key)
        assert (row["reserved_tokens"], row["tokens_today"]) == (0, usage["total_tokens"]), (row, usage)
    finally:
        if victim is not None:
            stack.restart(victim)
