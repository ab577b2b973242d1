"""The `openai` backend against a real llama.cpp `llama-server` running SmolLM2-135M (public model `local`, upstream
model `smollm2`; started by conftest.py with `--jinja`): streaming and not, on both base URLs, with the official
openai SDK; the upstream's own usage; constrained tool calls; a cancel that frees the server's slot; the context
window's error. The model's text is never pinned, only its shape."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse

import openai
import pytest
from handoff_e2e import CADDY_PORT, connect, iter_sse, request

MODEL = "local"
BASES = {"redirect": "/api", "transparent": "/v1"}
HELLO = [{"role": "user", "content": "Say hello in five words."}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Get the current time in a time zone.",
            "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
        },
    },
]
TIMEOUT = 120  # a 135M model on two cores; every call is bounded by it


def sdk(base: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{CADDY_PORT}{base}", api_key="unused", max_retries=0, timeout=TIMEOUT
    )


@pytest.fixture(params=list(BASES))
def client(cluster, llama_server, request) -> openai.OpenAI:
    return sdk(BASES[request.param])


def slots(llama_server: str) -> list[dict]:
    parts = urllib.parse.urlsplit(llama_server)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", "/slots")
        response = connection.getresponse()
        assert response.status == 200, response.read()[:300]
        return json.loads(response.read())
    finally:
        connection.close()


def usage_tuple(usage) -> tuple[int, int, int]:
    if not isinstance(usage, dict):
        usage = usage.model_dump()
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


def assert_real_usage(usage, max_tokens: int) -> None:
    prompt, completion, total = usage_tuple(usage)
    assert prompt > 0 and 1 <= completion <= max_tokens and total == prompt + completion, usage


def test_streaming_with_usage(client, task_usage):
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            stream=True,
            max_tokens=24,
            temperature=0,
            stream_options={"include_usage": True},
        )
    )
    assert {c.model for c in chunks} == {MODEL} and len({c.id for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-") and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip(), "no text"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] in (
        ["stop"],
        ["length"],
    )
    *content, last = chunks
    assert last.choices == [] and all(c.usage is None for c in content)
    assert_real_usage(last.usage, 24)
    assert usage_tuple(task_usage(last.id)) == usage_tuple(last.usage), (
        "the task row does not hold the upstream's usage"
    )


def test_streaming_without_usage(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=HELLO, stream=True, max_tokens=8))
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()


def test_non_streaming(client, task_usage):
    completion = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=24, temperature=0)
    assert completion.object == "chat.completion" and completion.model == MODEL
    assert completion.id.startswith("chatcmpl-")
    message = completion.choices[0].message
    assert message.role == "assistant" and message.content and message.content.strip()
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert_real_usage(completion.usage, 24)
    assert usage_tuple(task_usage(completion.id)) == usage_tuple(completion.usage)


def merged_tool_calls(chunks) -> dict[int, dict]:
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            into = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
            into["id"] = call.id or into["id"]
            if call.function is not None:
                into["name"] = call.function.name or into["name"]
                into["arguments"] += call.function.arguments or ""
    return calls


# What tool_choice "required" does in this llama-server: it builds a grammar from the template's tool-call format
# (<tool_call>{"name": ..., "arguments": {...}}</tool_call>) but lets any text come before the first <tool_call>, and
# a 135M model never writes one by itself. So the assistant turn is opened with "<tool_call>\n" (llama-server continues
# a final assistant message), and from there the grammar allows only a call of one of the given tools.
OPEN_A_CALL = {"role": "assistant", "content": "<tool_call>\n"}
TOOL_NAMES = {tool["function"]["name"] for tool in TOOLS}


def test_a_required_tool_call_streams_as_tool_call_deltas(cluster, llama_server, task_usage):
    chunks = list(
        sdk("/api").chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What is the weather like in Paris?"}, OPEN_A_CALL],
            tools=TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            stream=True,
            max_tokens=40,
            temperature=0,
            stream_options={"include_usage": True},
        )
    )
    calls = merged_tool_calls(chunks)
    assert calls, f"no tool_calls deltas: {[c.model_dump() for c in chunks][:6]}"
    first = calls[0]
    assert first["name"] in TOOL_NAMES and first["id"], calls
    assert isinstance(json.loads(first["arguments"]), dict), calls
    assert all(call["name"] in TOOL_NAMES for call in calls.values()), calls
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["tool_calls"], ["length"]), finishes  # the model may go on to a second call
    assert {c.model for c in chunks} == {MODEL}
    assert_real_usage(chunks[-1].usage, 40)
    assert usage_tuple(task_usage(chunks[-1].id)) == usage_tuple(chunks[-1].usage)


def test_a_required_tool_call_is_assembled_for_a_non_streaming_client(cluster, llama_server):
    completion = sdk("/v1").chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}, OPEN_A_CALL],
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=40,
        temperature=0,
    )
    calls = completion.choices[0].message.tool_calls
    assert calls and calls[0].function.name in TOOL_NAMES and calls[0].id, completion
    assert isinstance(json.loads(calls[0].function.arguments), dict), completion
    assert completion.choices[0].finish_reason in ("tool_calls", "length")
    assert_real_usage(completion.usage, 40)


def test_cancel_frees_the_llama_server_slot(cluster, llama_server, task_usage):
    body = {
        "model": MODEL,
        "stream": True,
        "max_tokens": 1500,
        "temperature": 0,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "Count from 1 to 2000, one number a line."}],
    }
    reply = request("POST", "/api/chat/completions", body)
    assert reply.status == 302, reply.body[:500]
    handoff = reply.json()
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(reply.headers["Location"]).query)["token"][0]
    conn = connect(timeout=TIMEOUT)
    chunks: list[dict] = []
    try:
        conn.request("GET", reply.headers["Location"], headers={"Accept": "text/event-stream"})
        response = conn.getresponse()
        assert response.status == 200
        events = iter_sse(response, deadline=time.monotonic() + TIMEOUT)
        while sum(1 for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("content")) < 5:
            event = next(events)
            assert event["data"] != "[DONE]", "the stream ended before the cancel"
            chunks.append(json.loads(event["data"]))
        assert any(slot["is_processing"] for slot in slots(llama_server)), "no slot busy: the test would prove nothing"

        cancelled = request("POST", f"/api/chat/completions/{handoff['id']}/cancel?token={token}")
        cancelled_at = time.monotonic()
        assert cancelled.status == 200, cancelled.body
        while any(slot["is_processing"] for slot in slots(llama_server)):
            assert time.monotonic() - cancelled_at < 3, (
                f"llama-server still generating 3 s after the cancel: {slots(llama_server)}"
            )
            time.sleep(0.05)
        for event in events:
            if event["data"] == "[DONE]":
                break
            chunks.append(json.loads(event["data"]))
        else:
            raise AssertionError("the cancelled stream did not end with [DONE]")
    finally:
        conn.close()
    assert [
        c["choices"][0]["finish_reason"] for c in chunks if c.get("choices") and c["choices"][0]["finish_reason"]
    ] == ["cancelled"]
    usage = task_usage(handoff["task_id"])
    assert 5 <= usage["completion_tokens"] < 1500, usage


LONG = [{"role": "user", "content": "hello " * 3000}]


def test_a_prompt_over_the_context_window_is_a_400_naming_the_limit(cluster, llama_server):
    n_ctx = {slot["n_ctx"] for slot in slots(llama_server)}
    assert n_ctx == {2048}, f"each slot should have the whole 2048-token window (--kv-unified): {n_ctx}"
    reply = request(
        "POST", "/v1/chat/completions", {"model": MODEL, "messages": LONG, "max_tokens": 8}, timeout=TIMEOUT
    )
    assert reply.status == 400, reply.body[:500]
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error", error
    assert "2048" in error["message"], error
    assert "18092" not in reply.body.decode(), "the upstream's address leaked"

    with pytest.raises(openai.BadRequestError) as raised:
        sdk("/api").chat.completions.create(model=MODEL, messages=LONG, max_tokens=8)
    assert raised.value.code == "context_length_exceeded" and raised.value.body["message"] == error["message"]

    with pytest.raises(openai.APIError) as raised:
        for _ in sdk("/v1").chat.completions.create(model=MODEL, messages=LONG, max_tokens=8, stream=True):
            pass
    assert raised.value.code == "context_length_exceeded" and raised.value.message == error["message"]
