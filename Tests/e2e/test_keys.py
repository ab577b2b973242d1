"""Issue 10's proof, end to end, for keys and ownership: the `handoff-api keys` command (create, list, revoke), the
same 401 for every bad key, a key streaming through /api and /v1, a stream that another key can neither open, resume
nor cancel, an idempotency key scoped to its API key, HANDOFF_AUTH=off refusing a network address, and no key in any
log file. The keyed API servers (18084, 18085) and their Caddy (18086) are conftest.py's `keyed` fixture; admission
and limits are in test_limits.py, the charge per outcome in test_charges.py.
"""

from __future__ import annotations

import base64
import collections
import os
import secrets
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from handoff_e2e import GOLDEN, README_BODY, SSE_PORTS, request
from handoff_stack import Stack, free_port, healthy, wait_until
from keys_e2e import (
    API_PORTS,
    CADDY,
    KEY_PATTERN,
    KEYS_SEEN,
    SEED,
    OpenStream,
    demo,
    hand_off,
    listening,
    post,
    read_whole,
    unique,
    wait_ended,
)
from limits_e2e import assert_invalid_key, openai_error, rate_headers

# ----- keys --------------------------------------------------------------------------------------------------------


def test_create_prints_the_key_alone_on_the_last_line_and_nothing_else_ever_shows_it(keyed):
    cli = keyed.cli
    key = keyed.key(
        "alice", requests_per_minute=60, tokens_per_minute=1000, tokens_per_day=10000, max_tokens=100, expires_in="30d"
    )
    other = keyed.key("alice-too")
    assert key.secret != other.secret and key.id != other.id
    assert key.stdout.rstrip("\n").split("\n")[-1] == key.secret and key.stdout.count(key.secret) == 1, key.stdout

    row = cli.listed(key)
    assert (row["name"], row["status"], row["max_tokens"], row["revoked_at"]) == (key.name, "active", 100, None), row
    assert row["hint"].startswith("hk-") and row["hint"].endswith(key.secret[-4:]) and len(row["hint"]) < 12, row
    created = datetime.fromisoformat(row["created_at"])
    expires = datetime.fromisoformat(row["expires_at"])
    assert abs(expires - created - timedelta(days=30)) < timedelta(minutes=1), row
    assert {"model": "", "requests_per_minute": 60, "tokens_per_minute": 1000, "tokens_per_day": 10000} in row[
        "limits"
    ], row
    assert cli.listed(other)["expires_at"] is None and cli.listed(other)["max_tokens"] is None

    usage = cli.usage_row(key)
    assert {
        k: usage[k]
        for k in (
            "requests_this_minute",
            "tokens_this_minute",
            "tokens_today",
            "reserved_tokens",
            "requests_per_minute",
            "tokens_per_minute",
            "tokens_per_day",
        )
    } == {
        "requests_this_minute": 0,
        "tokens_this_minute": 0,
        "tokens_today": 0,
        "reserved_tokens": 0,
        "requests_per_minute": 60,
        "tokens_per_minute": 1000,
        "tokens_per_day": 10000,
    }, usage

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
        "missing": None,
        "empty": "Bearer ",
        "no scheme": good.secret,
        "basic": f"Basic {good.secret}",
        "garbled": "Bearer hk-not-a-key",
        "unknown": f"Bearer {unknown}",
        "tampered": f"Bearer {tampered}",
        "revoked": f"Bearer {revoked.secret}",
        "expired": f"Bearer {expiring.secret}",
    }
    routes = [
        ("POST", "/api/chat/completions", demo("hi", max_tokens=1)),
        ("POST", "/v1/chat/completions", demo("hi", max_tokens=1)),
        ("POST", "/v1/chat/completions", demo("hi", max_tokens=1, stream=False)),
        ("POST", f"/api/chat/completions/{task.completion_id}/cancel?token={task.token}", None),
        ("POST", f"/v1/chat/completions/{task.task_id}/cancel?token={task.token}", None),
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/demo", None),
        ("GET", "/api/models", None),
    ]
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
        for headers, suffix, first in (
            ({"Last-Event-ID": "2", **a.auth}, "", 3),
            (a.auth, "&last_event_id=2", 3),
            ({"Last-Event-ID": "2"}, "", 3),
            ({}, "", 1),
        ):
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
        row = keyed.cluster.sql(
            f"SELECT status, cancel_requested_at IS NULL FROM handoff_tasks WHERE id = '{mine.task_id}'"
        )
        assert row == "running|t", f"another key's cancel reached the task: {row}"

        ok = post(f"/api/chat/completions/{mine.completion_id}/cancel?token={mine.token}", None, a, CADDY)
        assert ok.status == 200 and ok.json()["status"] == "cancelling", ok.body
        ok = post(
            f"/v1/chat/completions/{theirs.completion_id}/cancel",
            None,
            b,
            CADDY,
            headers={"X-Handoff-Stream-Token": theirs.token},
        )
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
    owner = keyed.cluster.sql(
        f"SELECT count(DISTINCT key_id) FROM handoff_tasks WHERE id IN "
        f"('{first.json()['task_id']}', '{other.json()['task_id']}')"
    )
    assert owner == "2", "the two tasks do not record their two keys"


# ----- start-up ----------------------------------------------------------------------------------------------------


def spawn_api(cluster: Stack, name: str, port: int, **settings: str) -> subprocess.Popen:
    argv, env = cluster.commands["api"]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_") and k != "DATABASE_URL"}
    with open(cluster.log_dir / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            argv,
            env={**inherited, **env, "HANDOFF_API_PORT": str(port), **settings},
            cwd=cluster.log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


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
    assert "HANDOFF_AUTH_OFF_ALLOW_NETWORK" in (cluster.log_dir / "api-auth-off-network.log").read_text(), (
        "the refusal does not say how to allow it"
    )

    port = free_port()
    allowed = spawn_api(
        cluster,
        "api-auth-off-allowed",
        port,
        HANDOFF_AUTH="off",
        HANDOFF_API_HOST="0.0.0.0",
        HANDOFF_AUTH_OFF_ALLOW_NETWORK="1",
    )
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
    log = (cluster.log_dir / "api-auth-off-allowed.log").read_text()
    assert "HANDOFF_AUTH=off: no API keys and no limits" in log, "told explicitly, it did not warn that auth is off"


# ----- last: nothing logged a key ----------------------------------------------------------------------------------


def logged(log_dir: Path, files: str, *words: str) -> bool:
    """Whether a line of a log file matching `files` (a glob in `log_dir`) holds every one of `words`."""
    return any(
        all(word in line for word in words)
        for path in log_dir.glob(files)
        for line in path.read_text(errors="replace").splitlines()
    )


# Marked run_last: conftest.py's pytest_collection_modifyitems moves it after every other test of the session, so
# that KEYS_SEEN (keys_e2e.py) holds the keys that test_limits.py and test_charges.py created too, whatever the order
# of the files on the command line.
@pytest.mark.run_last
def test_no_log_file_contains_a_key(keyed):
    key = keyed.key("logged", tokens_per_day=1_000_000)
    handoff = hand_off(demo("log me not", max_tokens=2), key, CADDY)
    read_whole(handoff.location, key.auth, CADDY)
    stranger = "hk-" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    KEYS_SEEN.append(stranger)
    assert_invalid_key(post("/api/chat/completions", demo("who am I", max_tokens=1), stranger, CADDY))
    # The client reads [DONE] before the worker and the replica log the task's end: wait for the last line each
    # process that served the task writes of it. (What the 401 logs, if anything, is written before it answers.)
    log_dir, task = keyed.cluster.log_dir, handoff.task_id.lower()
    last_lines = {"api-keyed-*.log": "queued", "worker.log": "task ended", "sse-*.log": "stream ended"}
    wait_until(
        f"the last log lines of task {task}",
        keyed.cluster,
        time.monotonic() + 10,
        lambda: all(logged(log_dir, files, task, line) for files, line in last_lines.items()),
    )
    logs = sorted(log_dir.glob("*.log"))
    assert any(path.name.startswith("api-keyed-") for path in logs)
    for path in logs:
        text = path.read_text(errors="replace")
        leaked = [secret[:8] + "…" for secret in KEYS_SEEN if secret in text]
        assert not leaked, f"{path.name} contains {len(leaked)} keys"
        assert not KEY_PATTERN.search(text), f"{path.name} contains something that looks like a key"
