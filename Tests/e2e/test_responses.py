"""Issue 11's proof: the OpenAI Responses API on Handoff's pipeline, driven by the official openai SDK unchanged (strict
response validation): create plain and streaming, background streams resumed from a cursor with the SDK's low-level
and high-level resume, polling, cancel, delete, max_output_tokens, validation, a resume across replicas and across a
killed replica, a worker killed mid-response (a stack of its own), and ownership with keys."""

from __future__ import annotations

import signal
import time

import openai
import pytest
from faults import restart_and_wait
from handoff_e2e import CADDY_PORT, GOLDEN, SSE_PORTS, kill_holder, request, start_with_workers
from handoff_stack import Ports, Stack
from keys_e2e import CADDY as KEYED_CADDY
from responses_e2e import (
    GOLDEN_TOKENS,
    LONG,
    PROMPT,
    RESPONSE_FIELDS,
    RESPONSE_ID,
    TERMINAL,
    check_events,
    check_golden,
    check_usage,
    deltas,
    handoff_path,
    read_raw,
    sdk,
    take,
    task_of,
    text_of,
)

BASES = {"transparent": "/v1", "redirect": "/api"}


@pytest.fixture
def client(cluster) -> openai.OpenAI:
    return sdk()


@pytest.mark.parametrize("base", list(BASES.values()), ids=list(BASES))
def test_create_plain_and_streaming(cluster, base):
    client = sdk(CADDY_PORT, base)
    response = client.responses.create(model="demo", input=PROMPT)
    assert RESPONSE_ID.fullmatch(response.id) and response.object == "response" and response.model == "demo"
    assert (response.status, response.background, response.output_text) == ("completed", False, GOLDEN)
    check_golden(response.to_dict())

    parts = [{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]
    events = take(client.responses.create(model="demo", input=parts, stream=True))
    final = check_events(events, background=False)
    assert text_of(events) == GOLDEN and final["id"] != response.id
    check_golden(final)

    with client.responses.stream(model="demo", input=PROMPT) as stream:
        streamed = take(stream)
        final = stream.get_final_response()
    assert final.output_text == GOLDEN and text_of(streamed) == GOLDEN and streamed[-1]["type"] == "response.completed"
    check_usage(final.usage.to_dict(), GOLDEN_TOKENS)
    if base == "/api":  # the visible hand-off: the SDK followed a 302, for the plain answer and for the stream
        for body in (
            {"model": "demo", "input": "hi", "max_output_tokens": 1},
            {"model": "demo", "input": "hi", "max_output_tokens": 1, "stream": True},
        ):
            reply = request("POST", "/api/responses", body)
            assert reply.status == 302 and reply.headers["Location"].startswith("/sse/responses/"), (reply.status, body)


def test_background_stream_resumes_from_a_cursor(client):
    stream = client.responses.create(model="demo", input=PROMPT, background=True, stream=True)
    head = take(stream, stop=lambda events: deltas(events) >= 5)
    stream.close()
    response_id, cursor = head[0]["response"]["id"], head[-1]["sequence_number"]
    assert not any(e["type"] in TERMINAL for e in head)

    tail = take(client.responses.retrieve(response_id, stream=True, starting_after=cursor))
    assert tail and tail[0]["sequence_number"] == cursor + 1, [e["sequence_number"] for e in tail[:3]]
    check_golden(check_events(head + tail, background=True))
    assert text_of(head) + text_of(tail) == GOLDEN

    replay = take(client.responses.retrieve(response_id, stream=True))  # the whole log again, byte for byte the same
    assert replay == head + tail

    with client.responses.stream(response_id=response_id, starting_after=cursor) as resumed:
        rest = take(resumed)
        final = resumed.get_final_response()
    # (The high-level stream adds snapshots to its events: compare what the server sent.)
    assert [(e["sequence_number"], e["type"]) for e in rest] == [(e["sequence_number"], e["type"]) for e in tail]
    assert text_of(rest) == text_of(tail), "the SDK's own resume (replay from 0, filtered) differs from the tail"
    assert final.id == response_id and final.output_text == GOLDEN
    check_usage(final.usage.to_dict(), GOLDEN_TOKENS)


def test_poll_a_background_response_until_it_completes(client):
    created = client.responses.create(model="demo", input=PROMPT, background=True)
    assert RESPONSE_ID.fullmatch(created.id) and created.background is True
    assert (created.status, created.output, created.usage) == ("queued", [], None), created
    seen, deadline = [], time.monotonic() + 30
    while (response := client.responses.retrieve(created.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, f"still {response.status} after 30 s"
        seen.append(response.status)
        time.sleep(0.05)
    assert (response.status, response.output_text, response.id) == ("completed", GOLDEN, created.id), seen
    check_golden(response.to_dict())
    reply = request("GET", f"/v1/responses/{created.id}")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
    assert RESPONSE_FIELDS <= set(reply.json()), (
        f"fields OpenAI always sends are missing: {RESPONSE_FIELDS - set(reply.json())}"
    )
    # Cancelling a finished background response answers it as it is.
    assert client.responses.cancel(created.id).status == "completed"


def test_cancel_a_running_background_response(client, task_usage):
    created = client.responses.create(
        model="demo",
        input=LONG,
        background=True,
        max_output_tokens=2000,
        instructions="Be brief.",
        metadata={"case": "cancel"},
        temperature=0.5,
        top_p=0.9,
    )
    assert (created.instructions, created.metadata, created.temperature, created.top_p, created.max_output_tokens) == (
        "Be brief.",
        {"case": "cancel"},
        0.5,
        0.9,
        2000,
    ), created
    stream = client.responses.retrieve(created.id, stream=True)
    head = take(stream, stop=lambda events: deltas(events) >= 5)
    cancelled = client.responses.cancel(created.id)
    assert (cancelled.id, cancelled.status) == (created.id, "cancelled"), cancelled
    rest = take(stream, deadline=10)  # the open stream ends after its last event
    events = head + rest
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert not any(e["type"] in TERMINAL for e in events), [e["type"] for e in events[-3:]]
    assert client.responses.retrieve(created.id).status == "cancelled"
    assert client.responses.cancel(created.id).status == "cancelled"
    usage = task_usage(task_of(created.id))
    assert 5 <= usage["completion_tokens"] < 1000, f"the worker did not stop: {usage}"

    plain = client.responses.create(model="demo", input=PROMPT, max_output_tokens=3)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(plain.id)


def test_delete(client):
    response = client.responses.create(model="demo", input=PROMPT, max_output_tokens=3)
    deleted = client.responses.with_raw_response.delete(response.id)
    assert deleted.status_code == 200
    assert deleted.http_response.json() == {"id": response.id, "object": "response", "deleted": True}
    for gone in (
        lambda: client.responses.retrieve(response.id),
        lambda: client.responses.delete(response.id),
        lambda: client.responses.cancel(response.id),
        lambda: take(client.responses.retrieve(response.id, stream=True)),
        lambda: client.responses.retrieve("resp_" + "0" * 32),
    ):
        with pytest.raises(openai.NotFoundError):
            gone()


def test_max_output_tokens_ends_incomplete(client):
    response = client.responses.create(model="demo", input=PROMPT, max_output_tokens=5)
    assert (response.status, response.incomplete_details and response.incomplete_details.reason) == (
        "incomplete",
        "max_output_tokens",
    ), response
    assert GOLDEN.startswith(response.output_text) and response.output[0].status == "incomplete"
    check_usage(response.usage.to_dict(), 5)
    assert client.responses.retrieve(response.id).status == "incomplete"

    events = take(
        client.responses.create(model="demo", input=PROMPT, max_output_tokens=5, background=True, stream=True)
    )
    final = check_events(events, background=True, terminal="response.incomplete")
    assert final["incomplete_details"] == {"reason": "max_output_tokens"} and deltas(events) == 5
    assert text_of(events) == response.output_text and final["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}]}, "tools"),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"}
                        ],
                    }
                ]
            },
            "input[0].content[0].type",
        ),
        ({"previous_response_id": "resp_" + "1" * 32}, "previous_response_id"),
        ({"background": True, "store": False}, "store"),
    ],
    ids=["tools", "input_image", "previous_response_id", "background_without_store"],
)
def test_unsupported_fields_are_a_400_naming_them(client, fields, param):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(**{"model": "demo", "input": PROMPT, **fields})
    assert raised.value.param == param, raised.value.body


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.create(model="gpt-nope", input=PROMPT, stream=True)
    assert raised.value.code == "model_not_found", raised.value.body


# ----- replicas, restarts, a lost worker -----------------------------------------------------------------------


def test_resume_on_the_other_replica(client):
    created = client.responses.create(model="demo", input=PROMPT, background=True)
    first, second = SSE_PORTS
    head, ended = read_raw(first, handoff_path(created.id), stop=lambda events: deltas(events) >= 5)
    assert not ended and head[0]["type"] == "response.created"
    cursor = head[-1]["sequence_number"]
    tail, ended = read_raw(second, handoff_path(created.id, starting_after=cursor))
    assert ended and tail[0]["sequence_number"] == cursor + 1
    check_golden(check_events(head + tail, background=True))
    assert text_of(head + tail) == GOLDEN


def test_resume_through_caddy_after_the_replica_that_served_it_is_killed(cluster, client):
    stream = client.responses.create(model="demo", input=PROMPT, background=True, stream=True)
    head = take(stream, stop=lambda events: deltas(events) >= 5)
    replica = stream.response.headers.get("X-Handoff-Replica", "")
    victim = f"sse-{replica.rpartition(':')[2]}"
    assert victim in cluster.processes, f"no replica named by X-Handoff-Replica: {replica!r}"
    try:
        cluster.signal(victim, signal.SIGKILL).wait(timeout=5)
        try:  # what the broken connection still delivers, if anything
            head += take(stream, deadline=10)
        except openai.APIConnectionError:
            pass
        assert not any(e["type"] in TERMINAL for e in head), "the response ended before the replica was killed"
        cursor = head[-1]["sequence_number"]
        tail = take(client.responses.retrieve(head[0]["response"]["id"], stream=True, starting_after=cursor))
        assert tail and tail[0]["sequence_number"] == cursor + 1
        check_golden(check_events(head + tail, background=True))
        assert text_of(head) + text_of(tail) == GOLDEN
    finally:
        restart_and_wait(cluster, victim)


LOST = Ports(caddy=17090, api=17091, sse=(17092,))
LOST_WORKERS = ("responses-worker-a", "responses-worker-b")
LEASE_SECONDS = 3
ABANDON_SECONDS = 1  # a chat task nobody watches is cancelled after this (plus up to 5 s); a background response is not


@pytest.fixture(scope="module")
def lost_stack(cluster, tmp_path_factory) -> Stack:
    """A database of its own, keyless, with one SSE replica, Caddy and two workers with a 3 s lease and a 1 s
    abandonment grace: the session's worker is never killed, and its 10 s lease and 30 s grace are slow to wait for."""
    stack = Stack(
        cluster.admin_url,
        LOST,
        tmp_path_factory.mktemp("responses-lost-logs"),
        cluster.bin_dir,
        prefix="handoff_responses",
    )
    stack.create_database()
    try:
        start_with_workers(
            stack,
            {"HANDOFF_KEEPALIVE_SECONDS": "1"},
            {
                "HANDOFF_LEASE_SECONDS": str(LEASE_SECONDS),
                "HANDOFF_ABANDON_SECONDS": str(ABANDON_SECONDS),
                "HANDOFF_DEMO_TOKEN_DELAY_MS": "20",
            },
            LOST_WORKERS,
        )
        yield stack
    finally:
        stack.stop()
        stack.drop_database()


def test_a_worker_killed_mid_response_continues_it(lost_stack):
    """The worker dies mid-Response: the other worker continues the answer, and the client's stream goes on from the
    next sequence number to its end, with the text the same request gets undisturbed."""
    client = sdk(LOST.caddy, timeout=10)
    stream = client.responses.create(model="demo", input=LONG, background=True, stream=True, max_output_tokens=300)
    events = take(stream, stop=lambda events: deltas(events) >= 10)
    response_id = events[0]["response"]["id"]
    victim = kill_holder(lost_stack, LOST_WORKERS, task_of(response_id))
    try:
        events += take(stream, deadline=LEASE_SECONDS + 30)
    finally:
        lost_stack.restart(victim)
    # 300 tokens is its max_output_tokens: it ends incomplete, as it would undisturbed.
    final = check_events(events, background=True, terminal="response.incomplete")
    assert final["status"] == "incomplete" and deltas(events) == 300, (final["status"], deltas(events))
    undisturbed = client.responses.create(model="demo", input=LONG, max_output_tokens=300)
    assert text_of(events) == undisturbed.output_text
    retrieved = client.responses.retrieve(response_id)
    assert (retrieved.status, retrieved.output_text) == ("incomplete", text_of(events)), retrieved.status


def test_a_background_response_runs_on_with_nobody_watching(lost_stack):
    client = sdk(LOST.caddy, timeout=10)
    created = client.responses.create(
        model="demo", input=LONG, background=True, max_output_tokens=600
    )  # ~12 s of tokens
    # Past the abandonment grace (1 s, plus the 5 s replicas may take to record watching, plus a lease renewal).
    time.sleep(ABANDON_SECONDS + 5 + LEASE_SECONDS)
    polled = client.responses.retrieve(created.id)
    assert polled.status == "in_progress" and polled.output_text, polled
    cancelled = lost_stack.sql(
        f"SELECT cancel_requested_at IS NOT NULL FROM handoff_tasks WHERE id = '{task_of(created.id)}'"
    )
    assert cancelled == "f", "a background response was cancelled as abandoned"
    client.responses.cancel(created.id)


# ----- ownership with keys -------------------------------------------------------------------------------------


def test_a_response_belongs_to_the_key_that_created_it(keyed):
    owner, other = keyed.key("responses-owner"), keyed.key("responses-other")
    mine, theirs = sdk(KEYED_CADDY, key=owner.secret), sdk(KEYED_CADDY, key=other.secret)
    created = mine.responses.create(model="demo", input=LONG, background=True, max_output_tokens=1000)
    rid = created.id
    for attempt in (
        lambda: theirs.responses.retrieve(rid),
        lambda: take(theirs.responses.retrieve(rid, stream=True)),
        lambda: theirs.responses.cancel(rid),
        lambda: theirs.responses.delete(rid),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    for method, path in (
        ("GET", f"/v1/responses/{rid}"),
        ("GET", f"/v1/responses/{rid}?stream=true"),
        ("POST", f"/v1/responses/{rid}/cancel"),
        ("DELETE", f"/v1/responses/{rid}"),
        ("POST", "/v1/responses"),
    ):
        reply = request(
            method, path, {"model": "demo", "input": "hi"} if path == "/v1/responses" else None, port=KEYED_CADDY
        )
        assert reply.status == 401, (method, path, reply.status, reply.body[:300])
    assert mine.responses.retrieve(rid).status in ("queued", "in_progress")
    head = take(mine.responses.retrieve(rid, stream=True), stop=lambda events: deltas(events) >= 2)
    assert head[0]["response"]["id"] == rid
    assert mine.responses.cancel(rid).status == "cancelled"
    mine.responses.delete(rid)
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(rid)
