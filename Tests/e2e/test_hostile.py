"""What a hostile client can do, tried against the real stack (issue 20): each case gets its own clear OpenAI error, and
harms nothing else — other streams complete, nothing is charged to the wrong key, every process stays alive.

The keyless cases run on the session's stack (`cluster`), the keyed ones on conftest.py's keyed API servers (`keyed`);
the queue cap and the Procfiles' `HANDOFF_AUTH` on API servers of their own, on the session's database or one of
their own, so the session's settings stay as every other test expects them.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.parse

import pytest
from handoff_e2e import CADDY_PORT, SSE_PORTS, connect, iter_sse, request
from handoff_stack import ROOT, Stack
from hostile_e2e import HOSTILE_PORTS, PROCFILE_API_PORT, alive, error_of, shell_api, tasks_with
from keys_e2e import CADDY as KEYED_CADDY
from keys_e2e import OpenStream, content_chunks, demo, hand_off, post, read_whole, wait_ended

# ----- keyed in one command --------------------------------------------------------------------------------------


@pytest.mark.parametrize("procfile", ["Procfile", "Procfile.local"])
def test_the_procfiles_api_takes_handoff_auth_from_the_environment(cluster, tmp_path, procfile):
    """`HANDOFF_AUTH=required make run` starts the API keyed; without it, keyless: the Procfile's own `api` line, run
    by a shell as honcho runs it, with the built binary in place of the release one."""
    line = next(entry for entry in (ROOT / procfile).read_text().splitlines() if entry.startswith("api:"))
    command = line.split(":", 1)[1].strip().replace(".build/release/", f"{cluster.bin_dir}/")
    base = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": cluster.database_url,
        "HANDOFF_SECRET": cluster.secret,
        "HANDOFF_API_PORT": str(PROCFILE_API_PORT),
        "HANDOFF_SECRET_FILE": str(tmp_path / "secret"),
    }
    body = demo("who are you?", max_tokens=1)
    for auth, expected in (({"HANDOFF_AUTH": "required"}, 401), ({}, 302)):
        with shell_api(command, {**base, **auth}, tmp_path / f"api-{expected}.log", PROCFILE_API_PORT):
            reply = post("/v1/chat/completions", body, None, PROCFILE_API_PORT)
            assert reply.status == expected, (auth, reply.status, reply.body[:300])
            if expected == 401:
                assert error_of(reply, 401)["code"] == "invalid_api_key"


# ----- one parse ---------------------------------------------------------------------------------------------------


def test_a_key_named_twice_is_refused_and_nothing_runs(cluster):
    """The decoder keeps the first `max_tokens`, jsonb the last: the body is refused, at any depth and however the
    name is spelled, before anything is stored — so the worker and the upstream never see it."""
    marker = "dup-" + os.urandom(4).hex()
    messages = f'[{{"role":"user","content":"{marker}"}}]'
    bodies = {
        "max_tokens": f'{{"model":"demo","max_tokens":2,"messages":{messages},"max_tokens":100000}}',
        "model": f'{{"model":"demo","messages":{messages},"model":"stub-openai"}}',
        "messages[0].role": f'{{"model":"demo","messages":[{{"role":"user","content":"{marker}","role":"system"}}]}}',
        "n": f'{{"model":"demo","n":1,"messages":{messages},"\\u006e":4}}',
    }
    for path in ("/api/chat/completions", "/v1/chat/completions"):
        for param, body in bodies.items():
            error = error_of(request("POST", path, body, {"Content-Type": "application/json"}), 400)
            assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "duplicate_key", param)
            assert f"'{param}'" in error["message"]
    responses = '{"model":"demo","input":"x","max_output_tokens":2,"max_output_tokens":9999}'
    error = error_of(request("POST", "/v1/responses", responses, {"Content-Type": "application/json"}), 400)
    assert error["code"] == "duplicate_key" and error["param"] == "max_output_tokens"
    assert tasks_with(cluster, marker) == 0
    # What the decoder accepts and jsonb cannot hold is this request's 400, not its batch's 500.
    for value in ("1e999999", '"\\ud800"'):
        body = f'{{"model":"demo","messages":{messages},"x":{value}}}'
        error = error_of(request("POST", "/api/chat/completions", body, {"Content-Type": "application/json"}), 400)
        assert error["code"] == "invalid_value", error
    # What is stored is exactly what was validated: one max_tokens, the one checked.
    reply = request("POST", "/api/chat/completions", demo(marker, max_tokens=2))
    assert reply.status == 302
    stored = json.loads(cluster.sql(f"SELECT request FROM handoff_tasks WHERE id = '{reply.json()['task_id']}'"))
    assert stored["max_tokens"] == 2
    alive(cluster)


# ----- caps that hold ----------------------------------------------------------------------------------------------


def test_a_request_without_max_tokens_gets_the_keys_cap(keyed):
    key = keyed.key("cap", max_tokens=5)
    handoff = hand_off(demo("no max_tokens here"), key, KEYED_CADDY)
    stream = read_whole(handoff.location, key.auth, KEYED_CADDY)
    assert len(content_chunks(stream.chunks)) == 5 and stream.finish_reasons == ["length"]
    assert keyed.cluster.sql(f"SELECT max_tokens FROM handoff_tasks WHERE id = '{handoff.task_id}'") == "5"
    status, usage = wait_ended(keyed.cluster, handoff.task_id)
    assert status == "succeeded" and usage["completion_tokens"] == 5


def test_an_upstream_is_told_the_cap_when_the_client_set_none(cluster, upstreams):
    """The catalogue's `stub-capped` caps its replies at 7: the stub upstream receives `max_tokens: 7`."""
    marker = "capped-" + os.urandom(4).hex()
    reply = request(
        "POST",
        "/api/chat/completions",
        {"model": "stub-capped", "stream": True, "messages": [{"role": "user", "content": marker}]},
    )
    assert reply.status == 302, reply.body[:300]
    wait_ended(cluster, reply.json()["task_id"])
    sent = [r["body"] for r in upstreams.requests("A") if marker in json.dumps(r["body"])]
    assert len(sent) == 1 and sent[0]["max_tokens"] == 7, sent
    too_many = {"model": "stub-capped", "max_tokens": 8, "messages": [{"role": "user", "content": marker}]}
    assert error_of(request("POST", "/api/chat/completions", too_many), 400)["param"] == "max_tokens"


# ----- load caps -----------------------------------------------------------------------------------------------------


def test_a_keys_concurrent_tasks_are_capped_background_responses_included(keyed):
    key = keyed.key("busy", max_concurrent_tasks=2)
    first = hand_off(demo("long one", max_tokens=400), key, KEYED_CADDY)
    background = post(
        "/v1/responses",
        {"model": "demo", "input": "long two", "max_output_tokens": 400, "background": True},
        key,
        KEYED_CADDY,
    )
    assert background.status == 200 and background.json()["status"] == "queued", background.body[:300]
    refused = post("/api/chat/completions", demo("third", max_tokens=5), key, KEYED_CADDY)
    error = error_of(refused, 429)
    assert (error["type"], error["code"]) == ("concurrency", "rate_limit_exceeded") and "2 tasks" in error["message"]
    assert refused.headers["Retry-After"] == "1"
    # Another key is not held back by this one.
    other = keyed.key("free")
    assert post("/api/chat/completions", demo("other", max_tokens=1), other, KEYED_CADDY).status == 302
    # Once one ends, there is room again.
    assert post(f"/v1/responses/{background.json()['id']}/cancel", None, key, KEYED_CADDY).status == 200
    deadline = time.monotonic() + 20
    while (reply := post("/api/chat/completions", demo("fourth", max_tokens=1), key, KEYED_CADDY)).status == 429:
        assert time.monotonic() < deadline, "no room after the background response was cancelled"
        time.sleep(0.2)
    assert reply.status == 302
    assert (
        post(f"/api/chat/completions/{first.completion_id}/cancel?token={first.token}", None, key, KEYED_CADDY).status
        == 200
    )
    alive(keyed.cluster)


@pytest.fixture(scope="module")
def queue_capped(cluster):
    """An API with HANDOFF_MAX_QUEUED=3 and no worker, on a database of its own: what it queues stays queued."""
    stack = Stack(
        cluster.admin_url, HOSTILE_PORTS, log_dir=cluster.log_dir, bin_dir=cluster.bin_dir, prefix="handoff_hostile"
    )
    stack.create_database()
    try:
        stack.start_services(settings={"HANDOFF_MAX_QUEUED": "3"}, worker=False)
        stack.wait_healthy(time.monotonic() + 60)
        yield stack
    finally:
        stack.stop()
        stack.drop_database()


def test_a_full_queue_answers_503_before_storing_anything(queue_capped):
    statuses = []
    for n in range(5):
        reply = post("/api/chat/completions", demo(f"queued {n}", max_tokens=1), None, queue_capped.ports.api)
        statuses.append(reply.status)
        if reply.status == 503:
            error = error_of(reply, 503)
            assert (error["type"], error["code"]) == ("server_error", "overloaded")
            assert reply.headers["Retry-After"] == "1"
    assert statuses == [302, 302, 302, 503, 503]
    assert queue_capped.sql("SELECT count(*) FROM handoff_tasks") == "3"
    alive(queue_capped)


# ----- isolated reads ------------------------------------------------------------------------------------------------


def test_a_bad_cursor_beside_fifty_good_streams_harms_none(cluster):
    """Last-Event-ID 3000000000 once failed the batched read it shared with other streams (they got 500s): now it
    is its own 400, and 50 ordinary streams beside four clients looping it all complete."""
    reply = request("POST", "/api/chat/completions", demo("victim", max_tokens=40))
    assert reply.status == 302
    victim = reply.json()["stream_url"]
    responses = request(
        "POST", "/v1/responses", {"model": "demo", "input": "x", "max_output_tokens": 3, "background": True}
    )
    stop = threading.Event()
    bad: list[int] = []

    def hostile() -> None:
        while not stop.is_set():
            for path, headers in (
                (victim, {"Last-Event-ID": "3000000000"}),
                (victim + "&last_event_id=-5", {}),
                (f"/v1/responses/{responses.json()['id']}?stream=true&starting_after=3000000000", {}),
            ):
                bad.append(request("GET", path, headers=headers).status)

    good: list[object] = [None] * 50

    def ordinary(n: int) -> None:
        try:
            body = demo(f"good {n}", max_tokens=30)
            reply = request("POST", "/api/chat/completions", body)
            conn = connect(CADDY_PORT, timeout=30)
            conn.request("GET", reply.headers["Location"], headers={"Accept": "text/event-stream"})
            response = conn.getresponse()
            text = response.read().decode()
            conn.close()
            good[n] = (
                response.status,
                text.endswith("data: [DONE]\n\n"),
                sum(1 for event in iter_sse(text.splitlines(keepends=True)) if event["id"] is not None),
            )
        except Exception as error:  # noqa: BLE001 (reported below, per stream)
            good[n] = error

    hostiles = [threading.Thread(target=hostile, daemon=True) for _ in range(4)]
    streams = [threading.Thread(target=ordinary, args=(n,), daemon=True) for n in range(50)]
    for thread in hostiles + streams:
        thread.start()
    for thread in streams:
        thread.join(timeout=90)
    stop.set()
    for thread in hostiles:
        thread.join(timeout=30)
    failed = [g for g in good if not (isinstance(g, tuple) and g[0] == 200 and g[1])]
    assert not failed, f"{len(failed)} of 50 ordinary streams failed, e.g. {failed[0]!r}"
    assert bad and set(bad) == {400}, sorted(set(bad))
    alive(cluster)


# ----- bounded connections on the replicas ---------------------------------------------------------------------------


def test_one_tasks_streams_are_capped_and_stream_bodies_bounded(cluster):
    reply = request("POST", "/api/chat/completions", demo("popular", max_tokens=200))
    location = reply.headers["Location"]
    replica = SSE_PORTS[0]
    streams = [OpenStream(location, None, replica) for _ in range(8)]
    try:
        assert [s.status for s in streams] == [200] * 8
        ninth = request("GET", location, port=replica)
        error = error_of(ninth, 429)
        assert error["code"] == "too_many_streams"
        # The other replica has its own count.
        with OpenStream(location, None, SSE_PORTS[1]) as elsewhere:
            assert elsewhere.status == 200
    finally:
        for stream in streams:
            stream.close()
    # A stream route ignores a body; a large one is refused without waiting for all of it.
    sock = socket.create_connection(("127.0.0.1", replica), timeout=10)
    try:
        sock.sendall(
            f"POST {location} HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 20}\r\n\r\n".encode() + b"x" * 80_000
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413") and b'"code":"request_too_large"' in answer, answer[:300]
    alive(cluster)


def test_a_connection_that_never_finishes_its_head_is_closed(cluster):
    """HANDOFF_SSE_HEADER_TIMEOUT_SECONDS (10 s here): a slowloris client holds a socket that long and no longer."""
    sock = socket.create_connection(("127.0.0.1", SSE_PORTS[1]), timeout=30)
    started = time.monotonic()
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert sock.recv(1024) == b""  # closed by the replica, nothing answered
    finally:
        sock.close()
    assert 9 <= time.monotonic() - started < 20
    alive(cluster)


# ----- tokens that follow the key ----------------------------------------------------------------------------------


def test_a_revoked_keys_streams_stop_open_or_not(keyed):
    key = keyed.key("revoked")
    handoff = hand_off(demo("a long story", max_tokens=500), key, KEYED_CADDY)
    url = handoff.location
    with OpenStream(url, key.auth, KEYED_CADDY) as stream:
        assert stream.status == 200
        stream.read_content(3)
        revoked_at = time.monotonic()
        keyed.cli.revoke(key.id)
        stream.read_to_end()  # ends: an error event, then [DONE]
        assert time.monotonic() - revoked_at < 5
        assert stream.done and stream.errors and stream.errors[-1]["code"] == "invalid_api_key", stream.chunks[-2:]
        assert "revoked" in stream.errors[-1]["message"]
    again = request("GET", url, headers={"Last-Event-ID": "2"}, port=KEYED_CADDY)
    assert error_of(again, 401)["code"] == "invalid_api_key"


def test_a_token_opens_only_routes_of_its_kind(cluster):
    chat = request("POST", "/api/chat/completions", demo("chat token", max_tokens=1))
    task, token = (
        chat.json()["task_id"],
        urllib.parse.parse_qs(urllib.parse.urlsplit(chat.headers["Location"]).query)["token"][0],
    )
    assert (
        error_of(request("GET", f"/sse/responses/{task}?token={token}&stream=true"), 403)["code"]
        == "invalid_stream_token"
    )
    response = request(
        "POST", "/api/responses", {"model": "demo", "input": "x", "max_output_tokens": 1, "stream": True}
    )
    assert response.status == 302, response.body[:300]
    location = urllib.parse.urlsplit(response.headers["Location"])
    rtask = location.path.rsplit("/", 1)[1]
    rtoken = urllib.parse.parse_qs(location.query)["token"][0]
    assert (
        error_of(request("GET", f"/sse/chat/completions/{rtask}?token={rtoken}"), 403)["code"] == "invalid_stream_token"
    )


# ----- no work for a client that cannot come back ------------------------------------------------------------------


def test_a_non_streaming_v1_client_that_hangs_up_stops_its_task(keyed):
    """It never saw the stream's URL (Caddy followed the 302): its task is cancelled at once, and charged what ran."""
    key = keyed.key("leaver")
    marker = "leaver-" + os.urandom(4).hex()
    conn = connect(KEYED_CADDY, timeout=30)
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps(demo(marker, max_tokens=1000, stream=False)),
        {"Content-Type": "application/json", **key.auth},
    )
    deadline = time.monotonic() + 10
    task = ""
    while not (
        task := keyed.cluster.sql(
            f"SELECT id FROM handoff_tasks WHERE request::text LIKE '%{marker}%' AND status = 'running'"
        )
    ):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    time.sleep(0.5)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    left = time.monotonic()
    status, usage = wait_ended(keyed.cluster, task, timeout=10)
    assert status == "cancelled" and time.monotonic() - left < 5
    assert usage is not None and 0 < usage["completion_tokens"] < 400, usage


# ----- bounded upstream parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, bound", [("stub-long-line", "65536 bytes"), ("stub-flood", "262144 bytes")])
def test_an_upstream_past_its_bounds_ends_with_upstream_error(cluster, model, bound):
    reply = request(
        "POST",
        "/api/chat/completions",
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "flood me"}]},
    )
    assert reply.status == 302
    conn = connect(CADDY_PORT, timeout=60)
    conn.request("GET", reply.headers["Location"])
    text = conn.getresponse().read().decode()
    conn.close()
    events = iter_sse(text.splitlines(keepends=True))
    errors = [json.loads(event["data"])["error"] for event in events if event["data"].startswith('{"error"')]
    assert errors and errors[-1]["code"] == "upstream_error" and bound in errors[-1]["message"], text[-500:]
    assert text.endswith("data: [DONE]\n\n")
    alive(cluster)
