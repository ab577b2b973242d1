"""Issue 10's proof, end to end: API keys, stream ownership, and request and token limits charged from real usage.

Two API servers with keys required (18084 and 18085) on the session's database, so the session's worker and SSE
replicas serve them, behind a Caddy of their own (18086): the session's API stays keyless (conftest.py starts it
with HANDOFF_AUTH=off) and every other test file runs unchanged. The two outcomes that need a short lease or a short
abandonment grace (a worker lost, a stream abandoned) run on a small stack of their own instead (API 18087, SSE
18088, two workers), because every worker on a database may claim any task and the session's lease (10 s) and
grace (30 s) are too slow to wait for.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import math
import os
import secrets
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta

import openai
import pytest

from faults import table_events
from handoff_e2e import GOLDEN, README_BODY, SSE_PORTS, Reply, request
from handoff_stack import Ports, Stack, healthy, wait_until
from keys_e2e import (KEY_PATTERN, KEYS_SEEN, Handoff, Key, KeysCLI, OpenStream, assert_invalid_key,
                      assert_rate_headers, assert_rate_limited, content_chunks, fresh_minute, free_port, hand_off,
                      keyed_one_token, listening, openai_error, post, rate_headers, read_whole, reservation,
                      reset_seconds, unique, utc_minute, wait_ended)

API_PORTS = (18084, 18085)
CADDY = 18086
FAULTS = Ports(caddy=18089, api=18087, sse=(18088,))  # no Caddy: the fault tests talk to the API and SSE directly
FAULT_WORKERS = ("keys-faults-worker-a", "keys-faults-worker-b")
MAX_MESSAGES = 8
MAX_PROMPT_CHARS = 2000
CEILING = 1024  # HANDOFF_RESERVE_MAX_TOKENS, left at its default
LEASE_SECONDS = 3
ABANDON_SECONDS = 1
WATCH_REFRESH = 5  # StreamLog.watchRefresh: how stale a watched task's watched_at may be
START_TIMEOUT = 60
SEED = [{"role": "user", "content": "Tell me a three sentence bedtime story about a unicorn."}]


def demo(content: str, max_tokens: int | None = None, stream: bool = True, **fields) -> dict:
    body = {"model": "demo", "stream": stream, "messages": [{"role": "user", "content": content}], **fields}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def encoded(body: dict) -> bytes:
    """The exact bytes a test sends, so that it can compute the reservation (4 bytes a token)."""
    return json.dumps(body).encode()


# ----- the stacks ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Keyed:
    cli: KeysCLI
    cluster: Stack

    def key(self, label: str, **options) -> Key:
        return self.cli.create(unique(label), **options)


def stop_processes(stack: Stack, names: list[str]) -> None:
    """SIGTERM, then SIGKILL after 10 s, to processes this module added to `stack`; forgets them."""
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
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def keyed(cluster) -> Keyed:
    """Two keyed API servers on the session's database (same secret and settings, HANDOFF_AUTH=required, small input
    limits) and a Caddy that balances over both, in front of the session's SSE replicas."""
    cli = KeysCLI(cluster.bin_dir / "handoff-api", cluster.database_url)
    argv, settings = cluster.commands["api"]
    started: list[str] = []
    try:
        try:
            for port in API_PORTS:
                name = f"api-keyed-{port}"
                cluster.start(name, argv, {**settings, "HANDOFF_AUTH": "required", "HANDOFF_API_PORT": str(port),
                                           "HANDOFF_MAX_MESSAGES": str(MAX_MESSAGES),
                                           "HANDOFF_MAX_PROMPT_CHARS": str(MAX_PROMPT_CHARS)})
                started.append(name)
            caddy_argv, caddy_settings = cluster.commands["caddy"]
            cluster.start("caddy-keyed", caddy_argv, {
                **caddy_settings, "HANDOFF_CADDY_PORT": str(CADDY),
                "HANDOFF_API_UPSTREAM": " ".join(f"127.0.0.1:{port}" for port in API_PORTS),
                "XDG_DATA_HOME": str(cluster.log_dir / "xdg-data-keyed"),
                "XDG_CONFIG_HOME": str(cluster.log_dir / "xdg-config-keyed")})
            started.append("caddy-keyed")
            deadline = time.monotonic() + START_TIMEOUT
            for port in API_PORTS:
                wait_until(f"/healthz on port {port}", cluster, deadline, lambda port=port: healthy(port))
            probe = cli.create(unique("probe"))
            wait_until("a keyed stream through the keys' Caddy", cluster, deadline,
                       lambda: keyed_one_token(probe, CADDY))
        except (RuntimeError, OSError, AssertionError) as error:
            raise pytest.fail.Exception(f"the keyed API servers did not start: {error}", pytrace=False) from None
        yield Keyed(cli, cluster)
    finally:
        stop_processes(cluster, started)


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
    common = {"DATABASE_URL": stack.database_url, "HANDOFF_SECRET": stack.secret,
              "HANDOFF_SECRET_FILE": str(cluster.log_dir / "unused-secret"),
              "HANDOFF_LOG_LEVEL": os.environ.get("HANDOFF_LOG_LEVEL", "info")}
    try:
        try:
            stack.start("keys-faults-api", [str(stack.bin_dir / "handoff-api")],
                        {**common, "HANDOFF_AUTH": "required", "HANDOFF_API_PORT": str(FAULTS.api)})
            for port in FAULTS.sse:
                stack.start(f"keys-faults-sse-{port}", [str(stack.bin_dir / "handoff-sse")],
                            {**common, "HANDOFF_SSE_PORT": str(port), "HANDOFF_KEEPALIVE_SECONDS": "1"})
            deadline = time.monotonic() + START_TIMEOUT
            stack.wait_healthy(deadline)  # the API has migrated the database
            for name in FAULT_WORKERS:
                stack.start_worker(common, {"HANDOFF_LEASE_SECONDS": str(LEASE_SECONDS),
                                            "HANDOFF_ABANDON_SECONDS": str(ABANDON_SECONDS),
                                            "HANDOFF_DEMO_TOKEN_DELAY_MS": "20"}, name=name)
            for name in FAULT_WORKERS:
                log = cluster.log_dir / f"{name}.log"
                wait_until(f"{name} started", stack, deadline, lambda log=log: "worker started" in log.read_text())
        except (RuntimeError, OSError) as error:
            raise pytest.fail.Exception(f"the fault stack did not start: {error}", pytrace=False) from None
        yield FaultStack(stack, KeysCLI(stack.bin_dir / "handoff-api", stack.database_url))
    finally:
        stack.stop()
        stack.drop_database()


def burst(body: bytes, key: Key, count: int) -> list[tuple[int, Reply]]:
    """`count` POST /api/chat/completions at once, alternating between the two keyed API servers (directly, not
    through Caddy, so both certainly take part)."""
    barrier = threading.Barrier(count)
    results: list[tuple[int, Reply] | BaseException | None] = [None] * count

    def send(n: int) -> None:
        port = API_PORTS[n % len(API_PORTS)]
        try:
            barrier.wait(timeout=20)
            results[n] = (port, post("/api/chat/completions", body, key, port))
        except BaseException as error:
            results[n] = error

    threads = [threading.Thread(target=send, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    failures = [r for r in results if not isinstance(r, tuple)]
    assert not failures, f"{len(failures)} requests got no answer, e.g. {failures[0]!r}"
    return results  # type: ignore[return-value]


def tally(replies: list[tuple[int, Reply]]) -> dict:
    return dict(collections.Counter((port, reply.status) for port, reply in replies))


# ----- keys --------------------------------------------------------------------------------------------------------

def test_create_prints_the_key_alone_on_the_last_line_and_nothing_else_ever_shows_it(keyed):
    cli = keyed.cli
    key = keyed.key("alice", requests_per_minute=60, tokens_per_minute=1000, tokens_per_day=10000, max_tokens=100,
                    expires_in="30d")
    other = keyed.key("alice-too")
    assert key.secret != other.secret and key.id != other.id
    assert key.stdout.rstrip("\n").split("\n")[-1] == key.secret and key.stdout.count(key.secret) == 1, key.stdout

    row = cli.listed(key)
    assert (row["name"], row["status"], row["max_tokens"], row["revoked_at"]) == (key.name, "active", 100, None), row
    assert row["hint"].startswith("hk-") and row["hint"].endswith(key.secret[-4:]) and len(row["hint"]) < 12, row
    created = datetime.fromisoformat(row["created_at"])
    expires = datetime.fromisoformat(row["expires_at"])
    assert abs(expires - created - timedelta(days=30)) < timedelta(minutes=1), row
    assert {"model": "", "requests_per_minute": 60, "tokens_per_minute": 1000, "tokens_per_day": 10000} in row["limits"], row
    assert cli.listed(other)["expires_at"] is None and cli.listed(other)["max_tokens"] is None

    usage = cli.usage_row(key)
    assert {k: usage[k] for k in ("requests_this_minute", "tokens_this_minute", "tokens_today", "reserved_tokens",
                                  "requests_per_minute", "tokens_per_minute", "tokens_per_day")} == {
        "requests_this_minute": 0, "tokens_this_minute": 0, "tokens_today": 0, "reserved_tokens": 0,
        "requests_per_minute": 60, "tokens_per_minute": 1000, "tokens_per_day": 10000}, usage

    for args in (("list",), ("list", "--json"), ("usage",), ("usage", "--json"), ("usage", key.id)):
        out = cli.ok(*args)
        assert key.name in out, f"`keys {' '.join(args)}` does not show the key at all: {out[:300]!r}"
        assert not KEY_PATTERN.search(out), f"`keys {' '.join(args)}` prints a key"


def test_every_bad_key_gets_the_same_401_and_never_a_hint(keyed):
    cli = keyed.cli
    expiring = keyed.key("expiring", expires_in="1s")
    expired_after = time.monotonic() + 1
    revoked = keyed.key("revoked")
    good = keyed.key("good")
    assert request("GET", "/v1/models", headers=revoked.auth, port=CADDY).status == 200, "the key works before"
    cli.revoke(revoked.id)
    assert cli.listed(revoked)["status"] == "revoked" and cli.listed(revoked)["revoked_at"]

    unknown = "hk-" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    tampered = good.secret[:-2] + ("AA" if good.secret[-2:] != "AA" else "BB")
    KEYS_SEEN.extend([unknown, tampered])
    task = hand_off(demo("bad keys", max_tokens=1), good, CADDY)
    time.sleep(max(0.0, expired_after + 1.2 - time.monotonic()))
    assert cli.listed(expiring)["status"] == "expired"

    authorizations = {
        "missing": None, "empty": "Bearer ", "no scheme": good.secret, "basic": f"Basic {good.secret}",
        "garbled": "Bearer hk-not-a-key", "unknown": f"Bearer {unknown}", "tampered": f"Bearer {tampered}",
        "revoked": f"Bearer {revoked.secret}", "expired": f"Bearer {expiring.secret}",
    }
    routes = [("POST", "/api/chat/completions", demo("hi", max_tokens=1)),
              ("POST", "/v1/chat/completions", demo("hi", max_tokens=1)),
              ("POST", "/v1/chat/completions", demo("hi", max_tokens=1, stream=False)),
              ("POST", f"/api/chat/completions/{task.completion_id}/cancel?token={task.token}", None),
              ("POST", f"/v1/chat/completions/{task.task_id}/cancel?token={task.token}", None),
              ("GET", "/v1/models", None), ("GET", "/v1/models/demo", None), ("GET", "/api/models", None)]
    messages: dict[str, str] = {}
    for what, authorization in authorizations.items():
        headers = {} if authorization is None else {"Authorization": authorization}
        for method, path, body in routes:
            for port in (CADDY, *API_PORTS):
                reply = request(method, path, body, headers, port=port)
                messages[f"{what}: {method} {path} on {port}"] = assert_invalid_key(reply)
    assert len(set(messages.values())) == 1, f"the 401s differ: {collections.Counter(messages.values())}"
    message = next(iter(messages.values()))
    for secret in (good.secret, unknown, tampered, revoked.secret, expiring.secret):
        assert secret not in message, f"the 401 repeats a key: {message!r}"

    for port in API_PORTS:
        assert healthy(port), "/healthz needs no key"
    assert request("GET", "/v1/models", headers=good.auth, port=CADDY).status == 200


def test_revoking_a_name_revokes_every_active_key_of_that_name(keyed):
    name = unique("team")
    first, second = keyed.cli.create(name), keyed.cli.create(name)
    bystander = keyed.key("bystander")
    keyed.cli.revoke(name)
    assert {keyed.cli.listed(k)["status"] for k in (first, second)} == {"revoked"}
    assert keyed.cli.listed(bystander)["status"] == "active"
    for key in (first, second):
        assert_invalid_key(post("/api/chat/completions", demo("hi", max_tokens=1), key, CADDY))
    assert post("/api/chat/completions", demo("hi", max_tokens=1), bystander, CADDY).status == 302


def test_a_key_streams_the_readme_reply_through_api_and_v1(keyed):
    key = keyed.key("reader")
    handoff = hand_off(README_BODY.encode(), key, CADDY)
    assert not rate_headers(handoff.reply), "rate-limit headers for a key without limits"
    stream = read_whole(handoff.location, key.auth, CADDY)  # openai-python keeps Authorization on the redirect
    assert stream.text == GOLDEN
    assert stream.chunks[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 67, "total_tokens": 77}

    # /v1: Caddy follows the 302 itself, forwarding the owner's Authorization to the SSE replica
    with OpenStream("/v1/chat/completions", key.auth, CADDY, body=README_BODY.encode()) as transparent:
        assert transparent.status == 200, transparent.body[:500]
        assert transparent.response.getheader("Content-Type", "").startswith("text/event-stream")
        transparent.read_to_end()
    assert transparent.text == GOLDEN and transparent.chunks[-1]["usage"]["total_tokens"] == 77

    whole = post("/v1/chat/completions", demo(SEED[0]["content"], stream=False), key, CADDY)
    assert whole.status == 200, whole.body[:500]
    assert whole.json()["choices"][0]["message"]["content"] == GOLDEN


# ----- admission under concurrency ---------------------------------------------------------------------------------

def test_fifty_concurrent_requests_on_two_replicas_admit_exactly_what_the_token_limit_fits(keyed, task_usage):
    fresh_minute(25)  # the per-minute counters are checked at the end
    minute = utc_minute()
    max_tokens = 250  # 5 s of demo tokens: every admitted task still holds its reservation when the burst is over
    body = encoded(demo("fifty at once", max_tokens=max_tokens))
    each = reservation(body, max_tokens)
    limit = 10 * each
    key = keyed.key("burst", tokens_per_minute=limit)

    replies = burst(body, key, 50)
    admitted = [reply for _, reply in replies if reply.status == 302]
    refused = [reply for _, reply in replies if reply.status == 429]
    assert (len(admitted), len(refused)) == (10, 40), f"(port, status): count = {tally(replies)}"
    row = keyed.cli.usage_row(key)
    assert row["reserved_tokens"] == 10 * each, (row, each)

    remaining = sorted(assert_rate_headers(r, requests=None, tokens=limit)["x-ratelimit-remaining-tokens"]
                       for r in admitted)
    assert remaining == [each * k for k in range(10)], f"remaining after each admission: {remaining}, each {each}"
    for reply in refused:
        assert_rate_limited(reply, "TPM", key, limit, requested=each)
        assert float(reply.headers["retry-after-ms"]) <= 2000, "only reservations block: retry in about a second"
        assert assert_rate_headers(reply, requests=None, tokens=limit)["x-ratelimit-remaining-tokens"] == 0

    handoffs = [Handoff(reply) for reply in admitted]
    for handoff in handoffs:
        stream = read_whole(handoff.location, key.auth, CADDY, timeout=30)
        assert len(content_chunks(stream.chunks)) == max_tokens
    charged = sum(task_usage(h.task_id)["total_tokens"] for h in handoffs)
    assert charged == 10 * (3 + max_tokens)  # the demo model: the prompt's words plus max_tokens
    row = keyed.cli.usage_row(key)
    assert utc_minute() == minute, "the test straddled a minute: fresh_minute did not leave enough time"
    assert (row["reserved_tokens"], row["tokens_this_minute"], row["tokens_today"], row["requests_this_minute"]) == \
           (0, charged, charged, 10), row


def test_twenty_concurrent_requests_admit_exactly_the_requests_per_minute(keyed):
    fresh_minute(15)
    minute = utc_minute()
    key = keyed.key("rpm", requests_per_minute=5)
    replies = burst(encoded(demo("twenty at once", max_tokens=1)), key, 20)
    admitted = [reply for _, reply in replies if reply.status == 302]
    refused = [reply for _, reply in replies if reply.status == 429]
    assert (len(admitted), len(refused)) == (5, 15), f"(port, status): count = {tally(replies)}"
    left = 60 - time.time() % 60
    remaining = sorted(assert_rate_headers(r, requests=5, tokens=None)["x-ratelimit-remaining-requests"] for r in admitted)
    assert remaining == [0, 1, 2, 3, 4], remaining
    for reply in refused:
        match = assert_rate_limited(reply, "RPM", key, 5, requested=1)
        assert int(match["used"]) == 5, reply.json()
        assert abs(int(reply.headers["Retry-After"]) - left) <= 2, ("retry when the minute ends", left, reply.headers)
        headers = assert_rate_headers(reply, requests=5, tokens=None)
        assert headers["x-ratelimit-remaining-requests"] == 0
        assert abs(reset_seconds(headers["x-ratelimit-reset-requests"]) - left) <= 2, (headers, left)
    row = keyed.cli.usage_row(key)
    assert utc_minute() == minute, "the test straddled a minute"
    assert (row["requests_this_minute"], row["requests_per_minute"]) == (5, 5), row


def test_limits_count_api_v1_and_non_streaming_requests_alike(keyed):
    fresh_minute(15)
    key = keyed.key("paths", requests_per_minute=3)
    handoff = hand_off(demo("by /api", max_tokens=2), key, CADDY)
    assert assert_rate_headers(handoff.reply, requests=3, tokens=None)["x-ratelimit-remaining-requests"] == 2
    read_whole(handoff.location, key.auth, CADDY)
    with OpenStream("/v1/chat/completions", key.auth, CADDY, body=demo("by /v1", max_tokens=2)) as transparent:
        assert transparent.status == 200, transparent.body[:500]
        transparent.read_to_end()
    whole = post("/v1/chat/completions", demo("whole", max_tokens=2, stream=False), key, CADDY)
    assert whole.status == 200 and whole.json()["object"] == "chat.completion", whole.body[:500]

    for path, body in (("/api/chat/completions", demo("fourth", max_tokens=2)),
                       ("/v1/chat/completions", demo("fourth", max_tokens=2)),
                       ("/v1/chat/completions", demo("fourth", max_tokens=2, stream=False))):
        assert_rate_limited(post(path, body, key, CADDY), "RPM", key, 3, requested=1)
    assert keyed.cli.usage_row(key)["requests_this_minute"] == 3


def test_a_model_scope_counts_only_requests_for_that_model(keyed):
    key = keyed.key("scoped")
    keyed.cli.limit(key.id, model="demo", requests_per_minute=1)
    limits = keyed.cli.listed(key)["limits"]
    assert {"model": "demo", "requests_per_minute": 1, "tokens_per_minute": None, "tokens_per_day": None} in limits, limits
    fresh_minute(10)
    hand_off(demo("scoped one", max_tokens=1), key, CADDY)
    refused = post("/api/chat/completions", demo("scoped two", max_tokens=1), key, CADDY)
    assert refused.status == 429, refused.body[:500]
    error = openai_error(refused, 429)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded"), error
    assert "requests per min (RPM): Limit 1," in error["message"], error
    other = post("/api/chat/completions", {"model": "stub-openai", "stream": True, "max_tokens": 1,
                                            "messages": [{"role": "user", "content": "another model"}]}, key, CADDY)
    assert other.status == 302, other.body[:500]
    assert keyed.cli.usage_row(key, "demo")["requests_this_minute"] == 1
    whole_key = keyed.cli.usage_row(key, "")
    assert (whole_key["requests_this_minute"], whole_key["requests_per_minute"]) == (2, None), whole_key


# ----- charged when the task ends, by outcome --------------------------------------------------------------------

def test_a_succeeded_task_is_charged_its_usage(keyed, task_usage):
    fresh_minute(10)
    key = keyed.key("succeeded", tokens_per_minute=100_000)
    handoff = hand_off(README_BODY.encode(), key, CADDY)
    assert keyed.cli.usage_row(key)["reserved_tokens"] == reservation(README_BODY, None, CEILING), \
        "the README's request has no max_tokens: the ceiling is reserved"
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
        cancelled = post(f"/api/chat/completions/{handoff.completion_id}/cancel?token={handoff.token}", None, key, CADDY)
        assert cancelled.status == 200, cancelled.body
        stream.read_to_end()
    assert stream.finish_reasons == ["cancelled"]
    usage = task_usage(handoff.task_id)
    assert 5 <= usage["completion_tokens"] < 500 and usage["total_tokens"] > usage["prompt_tokens"] > 0, usage
    row = keyed.cli.usage_row(key)
    assert (row["reserved_tokens"], row["tokens_this_minute"], row["tokens_today"]) == \
           (0, usage["total_tokens"], usage["total_tokens"]), (row, usage)


def test_a_task_that_failed_before_any_token_is_charged_nothing(keyed):
    body = encoded({"model": "stub-fail-404", "stream": True, "max_tokens": 50,
                    "messages": [{"role": "user", "content": "fails before its first token"}]})
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
    assert cli.usage_row(key)["reserved_tokens"] == reservation(body, 2000, CEILING) == \
           math.ceil(len(body) / 4) + CEILING, "max_tokens above the ceiling reserves the ceiling"
    with OpenStream(handoff.location, None, FAULTS.sse[0]) as stream:  # a browser's EventSource, then gone
        assert stream.status == 200
        stream.read_content(5)
    status, usage = wait_ended(stack, handoff.task_id, timeout=ABANDON_SECONDS + WATCH_REFRESH + LEASE_SECONDS + 10)
    assert status == "cancelled"
    assert 5 <= usage["completion_tokens"] < 1000 and usage["total_tokens"] > usage["prompt_tokens"] > 0, usage
    row = cli.usage_row(key)
    assert (row["reserved_tokens"], row["tokens_today"]) == (0, usage["total_tokens"]), (row, usage)


def test_a_lost_worker_is_charged_the_prompt_estimate_and_the_content_it_streamed(fault_stack):
    stack, cli = fault_stack.stack, fault_stack.cli
    key = cli.create(unique("lost"), tokens_per_day=1_000_000)
    body = encoded(demo("the worker dies mid-story", max_tokens=1000))
    handoff = hand_off(body, key, FAULTS.api)
    victim = None
    try:
        with OpenStream(handoff.location, key.auth, FAULTS.sse[0], timeout=40) as stream:
            assert stream.status == 200
            stream.read_content(10)
            assert cli.usage_row(key)["reserved_tokens"] == reservation(body, 1000)
            holder = stack.sql(f"SELECT worker_id FROM handoff_tasks WHERE id = '{handoff.task_id}'")
            [victim] = [name for name in FAULT_WORKERS if f"-{stack.pid(name)}-" in holder]
            stack.signal(victim, signal.SIGKILL).wait(timeout=5)
            killed_at = time.monotonic()
            stream.read_to_end()  # the other worker's rescuer ends it once the lease expires
        assert [error["code"] for error in stream.errors] == ["worker_lost"], stream.errors
        assert time.monotonic() - killed_at < LEASE_SECONDS + 5
        status, _ = wait_ended(stack, handoff.task_id)
        assert status == "failed"
        table = [json.loads(event) for event in table_events(stack, handoff.task_id).values()]
        streamed = len(content_chunks(table))
        assert 10 <= streamed < 1000 and len(content_chunks(stream.chunks)) == streamed
        row = cli.usage_row(key)
        assert (row["reserved_tokens"], row["tokens_today"]) == (0, math.ceil(len(body) / 4) + streamed), \
            (row, f"prompt estimate {math.ceil(len(body) / 4)}, content events {streamed}")
    finally:
        if victim is not None:
            stack.restart(victim)


# ----- headers -----------------------------------------------------------------------------------------------------

def test_remaining_tokens_decrease_as_tokens_are_spent(keyed, task_usage):
    fresh_minute(15)
    key = keyed.key("headers", requests_per_minute=1000, tokens_per_day=100_000)
    body = encoded(demo("count what I spend", max_tokens=20))
    each = reservation(body, 20)
    spent, seen = 0, []
    for n in range(3):
        handoff = hand_off(body, key, CADDY)
        values = assert_rate_headers(handoff.reply, requests=1000, tokens=100_000)
        assert values["x-ratelimit-remaining-tokens"] == 100_000 - spent - each, (values, spent, each)
        assert values["x-ratelimit-remaining-requests"] == 1000 - (n + 1), values
        until_midnight = 86400 - time.time() % 86400  # the only token window is the UTC day
        assert abs(reset_seconds(values["x-ratelimit-reset-tokens"]) - until_midnight) <= 5, values
        assert 0 < reset_seconds(values["x-ratelimit-reset-requests"]) <= 60, values
        seen.append(values["x-ratelimit-remaining-tokens"])
        read_whole(handoff.location, key.auth, CADDY)
        spent += task_usage(handoff.task_id)["total_tokens"]
    assert seen[0] > seen[1] > seen[2], seen
    assert keyed.cli.usage_row(key)["tokens_today"] == spent


# ----- the openai SDK ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["/api", "/v1"])
def test_the_sdk_raises_rate_limit_error_without_retries(keyed, base):
    fresh_minute(10)
    key = keyed.key("sdk-limited", requests_per_minute=1)
    hand_off(demo("the only one this minute", max_tokens=1), key, CADDY)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{CADDY}{base}", api_key=key.secret, max_retries=0, timeout=30)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="demo", messages=SEED, max_tokens=1, stream=True)
    assert raised.value.status_code == 429 and raised.value.code == "rate_limit_exceeded", raised.value
    assert raised.value.type == "requests" and "requests per min (RPM)" in raised.value.message
    assert int(raised.value.response.headers["retry-after"]) >= 1


def test_the_sdk_waits_retry_after_and_succeeds_once_a_reservation_is_released(keyed):
    # The holder reserves its prompt estimate plus 40; the limit leaves 10 beside it, less than any request needs.
    # Once it ends it is charged its real usage (2 words + 40), which leaves room for the SDK's request.
    holder_body = encoded(demo("hold " + "z" * 400, max_tokens=40))
    limit = reservation(holder_body, 40) + 10
    key = keyed.key("sdk-retry", tokens_per_day=limit)
    holder = hand_off(holder_body, key, CADDY)

    base = f"http://127.0.0.1:{CADDY}/api"
    with pytest.raises(openai.RateLimitError) as raised:
        openai.OpenAI(base_url=base, api_key=key.secret, max_retries=0, timeout=30).chat.completions.create(
            model="demo", messages=SEED, max_tokens=5)
    assert raised.value.type == "tokens" and "tokens per day (TPD)" in raised.value.message, raised.value.message
    assert float(raised.value.response.headers["retry-after-ms"]) <= 2000, "only a reservation blocks: about 1 s"

    statuses: list[int] = []
    http_client = openai.DefaultHttpxClient(event_hooks={"response": [lambda response: statuses.append(response.status_code)]})
    client = openai.OpenAI(base_url=base, api_key=key.secret, max_retries=2, timeout=30, http_client=http_client)
    started = time.monotonic()
    completion = client.chat.completions.create(model="demo", messages=SEED, max_tokens=5)
    waited = time.monotonic() - started
    assert completion.choices[0].message.content == " ".join(GOLDEN.split()[:5])
    assert statuses[0] == 429 and statuses[-2:] == [302, 200] and set(statuses[:-2]) == {429}, statuses
    assert waited >= 0.5, f"the SDK retried after {waited:.2f} s: it did not wait for Retry-After"
    assert wait_ended(keyed.cluster, holder.task_id)[0] == "succeeded"


# ----- ownership ---------------------------------------------------------------------------------------------------

def test_another_key_cannot_open_resume_or_cancel_a_stream(keyed):
    a, b = keyed.key("owner"), keyed.key("intruder")
    mine = hand_off(demo("mine alone", max_tokens=400), a, CADDY)
    theirs = hand_off(demo("someone else's", max_tokens=400), b, CADDY)
    try:
        # The owner opens and resumes it; so does the bare token, a capability (a browser's EventSource sends no
        # header).
        with OpenStream(mine.location, a.auth, CADDY) as stream:
            assert stream.status == 200, stream.body
            stream.read_events(3)
        for headers, suffix, first in (({"Last-Event-ID": "2", **a.auth}, "", 3), (a.auth, "&last_event_id=2", 3),
                                       ({"Last-Event-ID": "2"}, "", 3), ({}, "", 1)):
            with OpenStream(mine.location + suffix, headers, CADDY) as stream:
                assert stream.status == 200, (list(headers), suffix, stream.body)
                stream.read_events(1)
                assert stream.ids[0] == first, (list(headers), suffix, stream.ids)

        # Another key: neither open nor resume, through Caddy or on either replica directly.
        for port in (CADDY, *SSE_PORTS):
            for headers, suffix in (({}, ""), ({"Last-Event-ID": "2"}, ""), ({}, "&last_event_id=2")):
                reply = request("GET", mine.location + suffix, headers={**b.auth, **headers}, port=port)
                openai_error(reply, 403)

        # A token opens its own task only, whoever asks.
        for headers in (a.auth, b.auth, {}):
            openai_error(request("GET", f"{theirs.path}?token={mine.token}", headers=headers, port=CADDY), 403)
            openai_error(request("GET", f"{mine.path}?token={theirs.token}", headers=headers, port=CADDY), 403)

        # Cancel is an API route: a key is needed, and only the owner's will do.
        for prefix in ("/api", "/v1"):
            cancel = f"{prefix}/chat/completions/{mine.completion_id}/cancel"
            openai_error(post(f"{cancel}?token={mine.token}", None, b, CADDY), 403)
            openai_error(post(cancel, None, b, CADDY, headers={"X-Handoff-Stream-Token": mine.token}), 403)
            openai_error(post(f"{cancel}?token={theirs.token}", None, b, CADDY), 403)
            assert_invalid_key(post(f"{cancel}?token={mine.token}", None, None, CADDY))
        row = keyed.cluster.sql(f"SELECT status, cancel_requested_at IS NULL FROM handoff_tasks WHERE id = '{mine.task_id}'")
        assert row == "running|t", f"another key's cancel reached the task: {row}"

        ok = post(f"/api/chat/completions/{mine.completion_id}/cancel?token={mine.token}", None, a, CADDY)
        assert ok.status == 200 and ok.json()["status"] == "cancelling", ok.body
        ok = post(f"/v1/chat/completions/{theirs.completion_id}/cancel", None, b, CADDY,
                  headers={"X-Handoff-Stream-Token": theirs.token})
        assert ok.status == 200, ok.body
        assert wait_ended(keyed.cluster, mine.task_id)[0] == "cancelled"
    finally:
        for handoff, key in ((mine, a), (theirs, b)):
            post(f"/api/chat/completions/{handoff.completion_id}/cancel?token={handoff.token}", None, key, CADDY)


def test_an_idempotency_key_is_scoped_to_its_api_key(keyed):
    a, b = keyed.key("idem-a"), keyed.key("idem-b")
    idempotency = {"Idempotency-Key": unique("retry")}
    body = demo("only once", max_tokens=2)
    first = post("/api/chat/completions", body, a, CADDY, headers=idempotency)
    again = post("/api/chat/completions", body, a, CADDY, headers=idempotency)
    other = post("/api/chat/completions", body, b, CADDY, headers=idempotency)
    assert (first.status, again.status, other.status) == (302, 302, 302), (first.body, again.body, other.body)
    assert again.json()["task_id"] == first.json()["task_id"], "a retry with the same key did not find its task"
    assert other.json()["task_id"] != first.json()["task_id"], "another API key got the first key's task"
    owner = keyed.cluster.sql(f"SELECT count(DISTINCT key_id) FROM handoff_tasks WHERE id IN "
                              f"('{first.json()['task_id']}', '{other.json()['task_id']}')")
    assert owner == "2", "the two tasks do not record their two keys"


# ----- input limits ------------------------------------------------------------------------------------------------

def test_max_tokens_above_the_keys_cap_is_refused_and_not_counted(keyed):
    fresh_minute(10)
    key = keyed.key("capped", max_tokens=50, requests_per_minute=1)
    for field in ("max_tokens", "max_completion_tokens"):
        for path in ("/api/chat/completions", "/v1/chat/completions"):
            reply = post(path, demo("too long", **{field: 51}), key, CADDY)
            error = openai_error(reply, 400)
            assert (error["param"], error["type"]) == (field, "invalid_request_error"), error
            assert assert_rate_headers(reply, requests=1, tokens=None)["x-ratelimit-remaining-requests"] == 1
    handoff = hand_off(demo("just right", max_completion_tokens=50), key, CADDY)
    assert assert_rate_headers(handoff.reply, requests=1, tokens=None)["x-ratelimit-remaining-requests"] == 0
    assert keyed.cli.usage_row(key)["requests_this_minute"] == 1


def test_too_many_messages_or_prompt_characters_are_refused(keyed):
    fresh_minute(10)
    key = keyed.key("inputs", tokens_per_day=1_000_000)
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    refused = {
        "messages": [user(f"m{n}") for n in range(MAX_MESSAGES + 1)],
        "characters": [user("a" * (MAX_PROMPT_CHARS + 500))],
        "characters in all": [user("b" * (MAX_PROMPT_CHARS // 2 + 200)), user("c" * (MAX_PROMPT_CHARS // 2 + 200))],
    }
    for what, messages in refused.items():
        for port, path in ((API_PORTS[0], "/api/chat/completions"), (API_PORTS[1], "/api/chat/completions"),
                           (CADDY, "/v1/chat/completions")):
            reply = post(path, {"model": "demo", "max_tokens": 1, "messages": messages}, key, port)
            assert openai_error(reply, 400)["param"] == "messages", (what, reply.body)
            assert "x-ratelimit-limit-tokens" in rate_headers(reply), (what, "a 400 of a limited key has headers")
    for messages in ([user(f"m{n}") for n in range(MAX_MESSAGES)], [user("d" * (MAX_PROMPT_CHARS - 500))]):
        hand_off({"model": "demo", "max_tokens": 1, "stream": True, "messages": messages}, key, CADDY)
    assert keyed.cli.usage_row(key)["requests_this_minute"] == 2, "a refused request was counted"


# ----- start-up ----------------------------------------------------------------------------------------------------

def spawn_api(cluster: Stack, name: str, port: int, **settings: str) -> subprocess.Popen:
    argv, env = cluster.commands["api"]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_") and k != "DATABASE_URL"}
    with open(cluster.log_dir / f"{name}.log", "ab") as log:
        return subprocess.Popen(argv, env={**inherited, **env, "HANDOFF_API_PORT": str(port), **settings},
                                cwd=cluster.log_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def test_auth_off_refuses_a_network_address_unless_told_explicitly(cluster):
    port = free_port()
    refused = spawn_api(cluster, "api-auth-off-network", port, HANDOFF_AUTH="off", HANDOFF_API_HOST="0.0.0.0")
    try:
        bound = False
        deadline = time.monotonic() + 15
        while refused.poll() is None and time.monotonic() < deadline:
            bound = bound or listening(port)
            time.sleep(0.05)
        assert refused.poll() is not None, "auth off on 0.0.0.0 still runs after 15 s"
    finally:
        stop(refused)
    assert refused.returncode != 0 and not bound, (refused.returncode, bound)
    assert "HANDOFF_AUTH_OFF_ALLOW_NETWORK" in (cluster.log_dir / "api-auth-off-network.log").read_text(), \
        "the refusal does not say how to allow it"

    port = free_port()
    allowed = spawn_api(cluster, "api-auth-off-allowed", port, HANDOFF_AUTH="off", HANDOFF_API_HOST="0.0.0.0",
                        HANDOFF_AUTH_OFF_ALLOW_NETWORK="1")
    try:
        deadline = time.monotonic() + 30
        while not listening(port):
            assert allowed.poll() is None, f"told explicitly, it still exited ({allowed.returncode})"
            assert time.monotonic() < deadline, "told explicitly, it did not start listening in 30 s"
            time.sleep(0.1)
        assert healthy(port)
        keyless = post("/api/chat/completions", demo("no key needed", max_tokens=1), None, port)
        assert keyless.status == 302, keyless.body[:500]
    finally:
        stop(allowed)


# ----- last: nothing logged a key ----------------------------------------------------------------------------------

def test_no_log_file_contains_a_key(keyed):
    key = keyed.key("logged", tokens_per_day=1_000_000)
    read_whole(hand_off(demo("log me not", max_tokens=2), key, CADDY).location, key.auth, CADDY)
    stranger = "hk-" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    KEYS_SEEN.append(stranger)
    assert_invalid_key(post("/api/chat/completions", demo("who am I", max_tokens=1), stranger, CADDY))
    time.sleep(0.5)  # let the processes write their logs
    logs = sorted(keyed.cluster.log_dir.glob("*.log"))
    assert any(path.name.startswith("api-keyed-") for path in logs)
    for path in logs:
        text = path.read_text(errors="replace")
        leaked = [secret[:8] + "…" for secret in KEYS_SEEN if secret in text]
        assert not leaked, f"{path.name} contains {len(leaked)} keys"
        assert not KEY_PATTERN.search(text), f"{path.name} contains something that looks like a key"
