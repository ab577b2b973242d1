"""The official openai Python SDK, unchanged, against the real stack through Caddy — on both base URLs: `/api`
(the visible 302, which the SDK follows) and `/v1` (Caddy follows the 302 itself) — plus a second, independent SSE
parser (httpx-sse) over the raw bytes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import httpx_sse
import openai
import pytest
from handoff_e2e import CADDY_PORT, GOLDEN
from handoff_stack import ROOT, Ports, Stack

SEED = [{"role": "user", "content": "Tell me a three sentence bedtime story about a unicorn."}]
BASES = {"redirect": "/api", "transparent": "/v1"}


def sdk(port: int, base: str) -> openai.OpenAI:
    # No retries: a retried request would hide the first answer.
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}{base}", api_key="not-checked", max_retries=0, timeout=60)


@pytest.fixture(params=list(BASES))
def client(cluster, request) -> openai.OpenAI:
    return sdk(CADDY_PORT, BASES[request.param])


def text_of(chunks) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def test_streaming_with_usage(client):
    chunks = list(
        client.chat.completions.create(model="demo", messages=SEED, stream=True, stream_options={"include_usage": True})
    )
    assert text_of(chunks) == GOLDEN
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    *content, usage = chunks
    assert all(chunk.usage is None for chunk in content)
    assert usage.choices == [] and (
        usage.usage.prompt_tokens,
        usage.usage.completion_tokens,
        usage.usage.total_tokens,
    ) == (10, 67, 77)
    assert {chunk.id for chunk in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert all(chunk.object == "chat.completion.chunk" and chunk.model == "demo" for chunk in chunks)


def test_streaming_without_usage(client):
    chunks = list(client.chat.completions.create(model="demo", messages=SEED, stream=True))
    assert text_of(chunks) == GOLDEN
    assert all(chunk.usage is None and chunk.choices for chunk in chunks)


def test_non_streaming(client):
    completion = client.chat.completions.create(model="demo", messages=SEED)
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == GOLDEN
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        10,
        67,
        77,
    )


def test_stop_sequences_and_text_parts(client):
    parts = [{"role": "user", "content": [{"type": "text", "text": SEED[0]["content"]}]}]
    completion = client.chat.completions.create(
        model="demo", messages=parts, stop=[" upon", "zzz"], max_completion_tokens=50
    )
    assert completion.choices[0].message.content == "Once"
    assert completion.choices[0].finish_reason == "stop"


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-nope", messages=SEED, stream=True)
    assert raised.value.code == "model_not_found" and "gpt-nope" in raised.value.message


def test_bad_body_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="demo", messages=[], stream=True)
    assert raised.value.param == "messages" and "at least one message" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="demo", messages=SEED, n=2)
    assert raised.value.param == "n"


def test_models_are_listed(client):
    names = [model.id for model in client.models.list()]
    assert names[0] == "demo" and "local" in names, names  # the catalogue's order; conftest.py writes it
    assert client.models.retrieve("demo").owned_by == "handoff"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nope")


def test_an_idempotency_key_sends_retries_to_the_first_task(client):
    key = {"Idempotency-Key": f"retry-{time.time_ns()}"}
    first = client.chat.completions.create(model="demo", messages=SEED, max_tokens=5, extra_headers=key)
    again = client.chat.completions.create(model="demo", messages=SEED, max_tokens=5, extra_headers=key)
    assert again.id == first.id and again.choices[0].message.content == first.choices[0].message.content
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(model="demo", messages=SEED, max_tokens=6, extra_headers=key)
    assert raised.value.code == "idempotency_key_reused"


@pytest.mark.parametrize("base", list(BASES.values()))
def test_a_second_parser_sees_well_formed_events(cluster, base):
    body = {"model": "demo", "stream": True, "stream_options": {"include_usage": True}, "messages": SEED}
    with httpx.Client(base_url=f"http://127.0.0.1:{CADDY_PORT}", follow_redirects=True, timeout=60) as http:
        with httpx_sse.connect_sse(http, "POST", f"{base}/chat/completions", json=body) as source:
            events = list(source.iter_sse())
    assert events and all(event.data for event in events), "an event without data"
    ids = [int(event.id) for event in events[:-1]]
    assert ids == sorted(set(ids)) and ids[0] == 1, "ids are not strictly increasing from 1"
    assert events[-1].data == "[DONE]" and [e.data for e in events].count("[DONE]") == 1


def test_curl_through_the_transparent_base_url(cluster):
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-N",
            "--max-time",
            "60",
            f"http://127.0.0.1:{CADDY_PORT}/v1/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"model":"demo","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"hi"}]}',
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("id: 1\ndata: {") and done.stdout.endswith("data: [DONE]\n\n")


SLOW = Ports(caddy=17080, api=17081, sse=(17082, 17083))


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory):
    """Tokens 1.5 s apart and a keepalive every second: pings fall between events that carry ids."""
    admin_url = os.environ["HANDOFF_TEST_DATABASE_URL"]
    stack = Stack(
        admin_url,
        SLOW,
        tmp_path_factory.mktemp("slow-logs"),
        Path(os.environ.get("HANDOFF_BIN_DIR", ROOT / ".build" / "debug")).resolve(),
        prefix="handoff_slow",
    )
    stack.create_database()
    try:
        stack.start_services(
            settings={"HANDOFF_KEEPALIVE_SECONDS": "1"}, worker_settings={"HANDOFF_DEMO_TOKEN_DELAY_MS": "1500"}
        )
        stack.wait_healthy(time.monotonic() + 60)
        stack.wait_routed(time.monotonic() + 60)
        yield stack
    finally:
        stack.stop()
        stack.drop_database()


@pytest.mark.parametrize("base", list(BASES.values()))
def test_keepalives_between_events_do_not_break_the_sdk(slow_stack, base):
    stream = sdk(SLOW.caddy, base).chat.completions.create(model="demo", messages=SEED, stream=True, max_tokens=2)
    assert text_of(list(stream)) == "Once upon"
    # And the pings were really there, between events with ids (otherwise this test proves nothing).
    with httpx.Client(base_url=f"http://127.0.0.1:{SLOW.caddy}", follow_redirects=True, timeout=60) as http:
        body = {"model": "demo", "stream": True, "max_tokens": 2, "messages": SEED}
        with http.stream("POST", f"{base}/chat/completions", json=body) as response:
            raw = "".join(response.iter_text())
    # (The role chunk goes out with the first token, so pings may also come before the first id.)
    assert raw.count(": ping\n") >= 2 and ": ping\n" in raw[raw.index("id: 1\n") : raw.rindex("id: ")], raw[:400]
