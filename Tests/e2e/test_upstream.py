"""The `openai` backend against stub upstreams (upstream_stub.py, started by conftest.py): the stream shapes of
OpenAI, vLLM, Ollama and llama.cpp relayed with Handoff's id, created and model; everything else passed through; the
request forwarded whole; keys; failover; the normalised errors; failures mid-stream; cancel.

Each request carries a fresh marker in its prompt, so the stubs' records of it are found whatever ran before."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import uuid

import openai
import pytest
from handoff_e2e import CADDY_PORT, Stream, connect, iter_sse, request
from upstream_stub import TOOL_ARGUMENTS, content_pieces, expected

SHAPES = ("openai", "vllm", "ollama", "llamacpp")
CLIENT_KEY = "sk-client-key-never-forwarded"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
READ_TIMEOUT = 20  # seconds a whole exchange may take (the slowest stub scenario needs 1.5 s)
LEAKS = ("10.0.0.7", "127.0.0.1:1809", "sk-stub-secret", "platform.openai.com")


def marker() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def prompt(tag: str) -> list[dict]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"hello ({tag})"}]


def sdk(base: str = "/api") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{CADDY_PORT}{base}", api_key=CLIENT_KEY, max_retries=0, timeout=READ_TIMEOUT
    )


# ----- raw exchanges through Caddy --------------------------------------------------------------------------------


class Exchange:
    """One streaming request through `/api`, as the client saw it: the 302, then every byte of the stream."""

    def __init__(self, body: dict, timeout: float = READ_TIMEOUT):
        reply = request(
            "POST", "/api/chat/completions", {"stream": True, **body}, {"Authorization": f"Bearer {CLIENT_KEY}"}
        )
        assert reply.status == 302, (reply.status, reply.body[:500])
        self.handoff = reply.json()
        self.location = reply.headers["Location"]
        self.raw = bytes(reply.body) + str(reply.headers).encode()
        conn = connect(timeout=timeout)
        try:
            conn.request("GET", self.location, headers={"Accept": "text/event-stream"})
            response = conn.getresponse()
            assert response.status == 200, (response.status, response.read()[:500])
            self.raw += str(response.headers).encode()
            self.body = read_all(response, time.monotonic() + timeout)
        finally:
            conn.close()
        self.raw += self.body
        self.stream = Stream(list(iter_sse(self.body.splitlines(keepends=True))), [])

    @property
    def id(self) -> str:
        return self.handoff["id"]

    @property
    def task_id(self) -> str:
        return self.handoff["task_id"]


def read_all(response: http.client.HTTPResponse, deadline: float) -> bytes:
    parts = []
    while chunk := response.read1(65536):
        parts.append(chunk)
        assert time.monotonic() < deadline, "the stream did not end before its deadline"
    return b"".join(parts)


def whole(body: dict, base: str = "/v1", timeout: float = READ_TIMEOUT) -> tuple[int, dict, bytes]:
    """One non-streaming request: (status, JSON body, every byte the client saw). Through `/v1` Caddy follows the
    302 itself; through `/api` the client follows it."""
    reply = request(
        "POST", f"{base}/chat/completions", body, {"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=timeout
    )
    raw = bytes(reply.body) + str(reply.headers).encode()
    if base == "/api":
        assert reply.status == 302, (reply.status, reply.body[:500])
        reply = request("GET", reply.headers["Location"], timeout=timeout)
        raw += bytes(reply.body) + str(reply.headers).encode()
    return reply.status, reply.json(), raw


def task_of(completion_id: str) -> str:
    return str(uuid.UUID(hex=completion_id.removeprefix("chatcmpl-")))


# ----- what every relayed stream must be -----------------------------------------------------------------------


def only_a_role(choice: dict) -> bool:
    carried = {k for k, v in choice.get("delta", {}).items() if v not in (None, "", [])}
    return carried <= {"role"} and choice.get("finish_reason") is None and not choice.get("logprobs")


def assert_relayed(exchange: Exchange, model: str, include_usage: bool) -> list[dict]:
    """Handoff's framing around a relayed stream; returns its chunks."""
    stream = exchange.stream
    assert stream.events and stream.done, f"no data: [DONE] at the end: {exchange.body[-300:]!r}"
    assert exchange.body.endswith(b"data: [DONE]\n\n")
    numbered = stream.events[:-1]
    assert [e["id"] for e in numbered] == [str(n) for n in range(1, len(numbered) + 1)], "ids are not 1, 2, 3, ..."
    assert not any(e.get("unterminated") for e in stream.events)
    chunks = stream.chunks
    assert not any("error" in c for c in chunks), f"an error event in a good stream: {chunks}"
    assert {c["id"] for c in chunks} == {exchange.id}, "a chunk kept the upstream's id"
    assert len({c["created"] for c in chunks}) == 1, "a chunk kept the upstream's created"
    assert {c["model"] for c in chunks} == {model}, "a chunk kept the upstream's model"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}, chunks[0]
    for chunk in chunks[1:]:
        assert not (chunk["choices"] and only_a_role(chunk["choices"][0])), f"a role-only chunk was relayed: {chunk}"
    usage_chunks = [c for c in chunks if not c["choices"]]
    if include_usage:
        assert len(usage_chunks) == 1 and chunks[-1] is usage_chunks[0], "the usage chunk is not the last, alone"
        assert all(c.get("usage") is None for c in chunks[:-1])
    else:
        assert not usage_chunks, "a usage-only chunk that was not asked for"
        assert not any("usage" in c for c in chunks), "a usage key that was not asked for"
    return chunks


def text_of(chunks: list[dict], field: str = "content") -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks if c.get("choices"))


def finish_reasons(chunks: list[dict]) -> list[str]:
    return [
        c["choices"][0]["finish_reason"] for c in chunks if c.get("choices") and c["choices"][0].get("finish_reason")
    ]


def merged_tool_calls(deltas) -> dict[int, dict]:
    """tool_calls deltas merged by index, as a client does: id, type and name once, arguments concatenated."""
    calls: dict[int, dict] = {}
    for delta in deltas:
        for call in delta or []:
            into = calls.setdefault(call["index"], {"id": None, "type": None, "name": None, "arguments": ""})
            into["id"] = call.get("id") or into["id"]
            into["type"] = call.get("type") or into["type"]
            function = call.get("function") or {}
            into["name"] = function.get("name") or into["name"]
            into["arguments"] += function.get("arguments") or ""
    return calls


def sub(usage: dict) -> dict:
    return {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def typed(value):
    """JSON with its types spelled out, so 1 and 1.0, or "7" and 7, differ."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return type(value).__name__, value


def assert_forwarded(record: dict, upstream_model: str, sent: dict) -> None:
    """The stub got the client's whole body, with model rewritten and streaming with usage forced."""
    body = record["body"]
    assert body["model"] == upstream_model
    assert body["stream"] is True
    assert body["stream_options"]["include_usage"] is True
    for key, value in sent.items():
        if key not in ("model", "stream", "stream_options"):
            assert typed(body.get(key)) == typed(value), f"{key}: sent {value!r}, the upstream got {body.get(key)!r}"
    assert record["authorization"] is None, "an Authorization header reached an upstream that has no key"
    assert CLIENT_KEY not in json.dumps(record["headers"]), "the client's key reached the upstream"


# ----- the shapes, three ways each ----------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize("shape", SHAPES)
def test_a_shape_streams_relayed(cluster, upstreams, task_usage, shape, include_usage):
    tag = marker()
    body = {"model": f"stub-{shape}", "messages": prompt(tag), "temperature": 0.5}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    exchange = Exchange(body)
    chunks = assert_relayed(exchange, f"stub-{shape}", include_usage)
    want = expected(shape, body)
    assert text_of(chunks) == want["text"]
    assert finish_reasons(chunks) == ["stop"]
    if include_usage:
        assert sub(chunks[-1]["usage"]) == want["usage"]
    assert sub(task_usage(exchange.task_id)) == want["usage"]

    # What is not Handoff's passes through as the upstream wrote it.
    relayed = chunks[1:]
    if shape == "openai":
        assert all(c.get("system_fingerprint") == "fp_560af6e559" and "obfuscation" in c for c in relayed)
        assert all(c["service_tier"] == "default" for c in relayed)
    elif shape == "vllm":
        finish = next(c for c in relayed if c["choices"] and c["choices"][0]["finish_reason"])
        assert "stop_reason" in finish["choices"][0] and finish["choices"][0]["delta"] == {"content": ""}
    elif shape == "ollama":
        assert all(c["system_fingerprint"] == "fp_ollama" for c in relayed)
        assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in relayed if c["choices"])
    else:
        assert all(c["system_fingerprint"] == "b7170-0f7c6961" for c in relayed)
        if include_usage:
            assert chunks[-1]["timings"]["prompt_n"] == want["usage"]["prompt_tokens"]

    [record] = upstreams.wait_records(tag, lambda found: found and found[0]["outcome"] is not None)
    assert record["outcome"] == "complete" and record["stub"] == "A"
    assert record["path"] == f"/stub-{shape}/v1/chat/completions"
    assert_forwarded(record, shape, body)


@pytest.mark.parametrize("base", ["/v1", "/api"])
@pytest.mark.parametrize("shape", SHAPES)
def test_a_shape_assembled_for_a_non_streaming_client(cluster, upstreams, task_usage, shape, base):
    tag = marker()
    body = {"model": f"stub-{shape}", "messages": prompt(tag)}
    status, completion, _ = whole(body, base)
    assert status == 200, completion
    want = expected(shape, body)
    assert completion["object"] == "chat.completion" and completion["model"] == f"stub-{shape}"
    assert completion["id"].startswith("chatcmpl-") and len(completion["id"]) == len("chatcmpl-") + 32
    [choice] = completion["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == want["text"]
    assert choice["finish_reason"] == "stop"
    assert sub(completion["usage"]) == want["usage"], "not the upstream's own usage"
    assert sub(task_usage(completion["id"])) == want["usage"]
    [record] = upstreams.records(tag)
    assert_forwarded(record, shape, body)


def test_the_catalogue_is_listed_in_file_order(cluster, upstreams):
    names = [m["name"] for m in json.loads(upstreams.catalogue_file.read_text())["models"]]
    assert [model.id for model in sdk("/v1").models.list()] == names
    assert sdk("/api").models.retrieve("stub-vllm").id == "stub-vllm"


# ----- pass-through of what the client sent, and of what the upstream sent --------------------------------------


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "whole"])
def test_the_whole_request_reaches_the_upstream(cluster, upstreams, streaming):
    tag = marker()
    body = {
        "model": "stub-openai",
        "messages": prompt(tag),
        "response_format": {"type": "json_object"},
        "seed": 7,
        "reasoning_effort": "low",
        "x_custom": {"a": [1, 2.5]},
        "temperature": 0.25,
        "top_p": 0.75,
        "max_tokens": 50,
        "stop": ["zzz"],
        "user": "user-42",
        "metadata": {"k": "v"},
        "parallel_tool_calls": False,
        "logit_bias": {"50256": -100},
        "presence_penalty": 0.5,
    }
    if streaming:
        exchange = Exchange({**body, "stream_options": {"include_usage": False}})
        assert text_of(exchange.stream.chunks) == expected("openai", body)["text"]
    else:
        status, completion, _ = whole(body)
        assert status == 200, completion
    [record] = upstreams.records(tag)
    assert_forwarded(record, "openai", body)
    assert set(record["body"]) == set(body) | {"stream", "stream_options"}, "fields added or lost on the way"


@pytest.mark.parametrize("shape", SHAPES)
def test_tool_calls_stream_through_the_sdk(cluster, upstreams, shape):
    tag = marker()
    chunks = list(
        sdk().chat.completions.create(
            model=f"stub-{shape}", messages=prompt(tag), tools=TOOLS, tool_choice="auto", stream=True
        )
    )
    want = expected(shape, {"tools": TOOLS})["tool_call"]
    calls = merged_tool_calls([c.model_dump()["choices"][0]["delta"].get("tool_calls") for c in chunks if c.choices])
    assert calls == {
        0: {"id": want["id"], "type": "function", "name": "get_weather", "arguments": "".join(TOOL_ARGUMENTS)}
    }
    assert json.loads(calls[0]["arguments"]) == {"city": "Zürich", "unit": "celsius"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert {c.model for c in chunks} == {f"stub-{shape}"}
    [record] = upstreams.records(tag)
    assert typed(record["body"]["tools"]) == typed(TOOLS) and record["body"]["tool_choice"] == "auto"


@pytest.mark.parametrize("shape", SHAPES)
def test_tool_calls_assembled_for_a_non_streaming_sdk_client(cluster, upstreams, task_usage, shape):
    tag = marker()
    choice = {"type": "function", "function": {"name": "get_time"}}
    completion = sdk("/v1").chat.completions.create(
        model=f"stub-{shape}", messages=prompt(tag), tools=TOOLS, tool_choice=choice
    )
    want = expected(shape, {"tools": TOOLS, "tool_choice": choice})
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert (call.id, call.type, call.function.name) == (want["tool_call"]["id"], "function", "get_time")
    assert call.function.arguments == want["tool_call"]["function"]["arguments"]
    assert not message.content
    assert sub(completion.usage.model_dump()) == want["usage"]
    assert sub(task_usage(completion.id)) == want["usage"]
    [record] = upstreams.records(tag)
    assert record["body"]["tool_choice"] == choice


@pytest.mark.parametrize("shape", ["openai", "vllm", "llamacpp"])
def test_logprobs_pass_through(cluster, shape):
    exchange = Exchange({"model": f"stub-{shape}", "messages": prompt(marker()), "logprobs": True, "top_logprobs": 2})
    chunks = assert_relayed(exchange, f"stub-{shape}", include_usage=False)
    tokens = [c for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert [c["choices"][0]["delta"]["content"] for c in tokens] == content_pieces(shape)
    for chunk in tokens:
        [entry] = chunk["choices"][0]["logprobs"]["content"]
        assert entry["token"] == chunk["choices"][0]["delta"]["content"]
        assert entry["bytes"] == list(entry["token"].encode()) and len(entry["top_logprobs"]) == 2


def test_reasoning_content_passes_through(cluster, task_usage):
    body = {"model": "stub-reasoning", "messages": prompt(marker()), "stream_options": {"include_usage": True}}
    exchange = Exchange(body)
    chunks = assert_relayed(exchange, "stub-reasoning", include_usage=True)
    want = expected("reasoning", body)
    assert text_of(chunks, "reasoning_content") == want["reasoning"]
    assert text_of(chunks) == want["text"]
    first_content = next(i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["delta"].get("content"))
    last_reasoning = max(
        i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["delta"].get("reasoning_content")
    )
    assert last_reasoning < first_content
    assert sub(chunks[-1]["usage"]) == want["usage"] == sub(task_usage(exchange.task_id))


def test_a_slow_first_token_is_waited_for(cluster):
    started = time.monotonic()
    chunks = list(sdk().chat.completions.create(model="stub-slow-first", messages=prompt(marker()), stream=True))
    assert time.monotonic() - started >= 1.4
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected("openai", {})["text"]


# ----- keys ---------------------------------------------------------------------------------------------------


def test_the_upstream_key_is_sent_and_never_shown(cluster, upstreams):
    tag = marker()
    exchange = Exchange({"model": "stub-keyed", "messages": prompt(tag), "stream_options": {"include_usage": True}})
    assert text_of(exchange.stream.chunks) == expected("openai", {})["text"]
    status, completion, raw = whole({"model": "stub-keyed", "messages": prompt(tag)})
    assert status == 200, completion
    records = upstreams.records(tag)
    assert len(records) == 2
    assert {r["authorization"] for r in records} == {f"Bearer {upstreams.api_key}"}
    assert upstreams.api_key.encode() not in exchange.raw + raw

    tag = marker()
    status, completion, _ = whole({"model": "stub-unset-key", "messages": prompt(tag)})
    assert status == 200, completion
    [record] = upstreams.records(tag)
    assert record["authorization"] is None, "a key whose variable is unset was sent anyway"


def test_an_upstream_that_refuses_the_key_does_not_show_it(cluster, upstreams):
    """The upstream echoes the key in its 401. Whatever Handoff makes of it, the key stays inside, and the client
    (whose own credentials are not at fault) does not get a 401."""
    tag = marker()
    status, document, raw = whole({"model": "stub-keyed-401", "messages": prompt(tag)})
    assert status not in (200, 401), document
    assert set(document["error"]) == {"message", "type", "param", "code"}
    exchange = Exchange({"model": "stub-keyed-401", "messages": prompt(tag)})
    assert upstreams.api_key.encode() not in raw + exchange.raw
    assert all(r["authorization"] == f"Bearer {upstreams.api_key}" for r in upstreams.records(tag))


# ----- failover --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, served_by, first_outcome",
    [
        ("failover", "openai", "rejected"),
        ("failover-429", "vllm", "rejected"),
        ("failover-timeout", "ollama", "client_disconnected"),
    ],
)
def test_failover_before_the_first_chunk_is_invisible(cluster, upstreams, task_usage, model, served_by, first_outcome):
    tag = marker()
    body = {"model": model, "messages": prompt(tag), "stream_options": {"include_usage": True}}
    exchange = Exchange(body)
    chunks = assert_relayed(exchange, model, include_usage=True)
    want = expected(served_by, body)
    assert text_of(chunks) == want["text"] and finish_reasons(chunks) == ["stop"]
    assert sub(chunks[-1]["usage"]) == want["usage"] == sub(task_usage(exchange.task_id))
    first, second = upstreams.wait_records(tag, lambda found: len(found) == 2 and found[0]["outcome"] is not None)
    assert (first["stub"], first["outcome"]) == ("A", first_outcome), first
    assert (second["stub"], second["body"]["model"], second["outcome"]) == ("B", served_by, "complete"), second
    assert second["started"] >= first["started"]

    # Within its backoff the failed endpoint is skipped.
    tag = marker()
    status, completion, _ = whole({"model": model, "messages": prompt(tag)})
    assert status == 200 and completion["choices"][0]["message"]["content"] == want["text"], completion
    assert [r["stub"] for r in upstreams.records(tag)] == ["B"], "an endpoint in backoff was asked again"


def test_failover_from_a_refused_connection(cluster, upstreams):
    tag = marker()
    completion = sdk().chat.completions.create(model="failover-refused", messages=prompt(tag))
    assert completion.choices[0].message.content == expected("llamacpp", {})["text"]
    assert [r["stub"] for r in upstreams.records(tag)] == ["B"]


def test_no_failover_after_the_first_chunk(cluster, upstreams):
    tag = marker()
    exchange = Exchange({"model": "failover-midstream", "messages": prompt(tag)})
    assert_ends_with_an_error(exchange, "upstream_error")
    assert [r["stub"] for r in upstreams.records(tag)] == ["A"], "a stream that had started was failed over"


def test_the_least_busy_upstream_goes_first(cluster, upstreams):
    """Two slow streams of one model with two idle endpoints: the second goes to the endpoint the first is not on."""
    opened = []
    try:
        for n in range(2):
            tag = marker()
            opened.append(SlowStream({"model": "stub-pair", "messages": prompt(tag)}, tag))
            opened[-1].read_content_chunks(2)
        stubs = [upstreams.wait_records(s.tag, lambda found: len(found) == 1)[0]["stub"] for s in opened]
        assert sorted(stubs) == ["A", "B"], stubs
    finally:
        for stream in opened:
            stream.cancel()
            stream.close()


# ----- errors before the first chunk ----------------------------------------------------------------------------

ERRORS = [
    # model, status, code, type (None: not specified), text the message must contain
    ("stub-context-400", 400, "context_length_exceeded", "invalid_request_error", "2048"),
    ("stub-vllm-context-400", 400, "context_length_exceeded", "invalid_request_error", "2048"),
    ("stub-openai-context-400", 400, "context_length_exceeded", "invalid_request_error", "2048"),
    ("stub-old-vllm-400", 400, "400", "invalid_request_error", "top_k"),
    ("stub-fail-404", 404, "model_not_found", "invalid_request_error", None),
    ("stub-fail-503", 502, "upstream_error", "server_error", None),
    ("stub-fail-502", 502, "upstream_error", "server_error", None),
    ("stub-fail-500-json", 502, "upstream_error", "server_error", None),
    ("failover-all-503", 502, "upstream_error", "server_error", None),
    ("stub-refused", 503, "upstream_unavailable", None, None),
    ("stub-first-token-timeout", 504, "upstream_timeout", None, None),
    ("stub-fail-429", 503, "upstream_overloaded", None, None),
    ("failover-all-429", 503, "upstream_overloaded", None, None),
]


def assert_error_document(error: dict, code: str, kind: str | None, contains: str | None) -> None:
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == code, error
    if kind is not None:
        assert error["type"] == kind, error
    assert isinstance(error["message"], str) and error["message"], error
    if contains is not None:
        assert contains in error["message"], error
    for leak in LEAKS:
        assert leak not in error["message"], f"{leak!r} leaked: {error}"


@pytest.mark.parametrize("model, status, code, kind, contains", ERRORS, ids=[e[0] for e in ERRORS])
def test_an_error_before_the_first_chunk_is_normalised(cluster, upstreams, model, status, code, kind, contains):
    # After a 429 the endpoint is skipped for its Retry-After (1 s): each request here waits that out, so that each
    # meets the 429 itself.
    pause = 1.1 if "429" in model else 0
    tag = marker()
    got, document, raw = whole({"model": model, "messages": prompt(tag)})
    assert got == status, document
    if model.startswith("failover-"):
        assert sorted(r["stub"] for r in upstreams.records(tag)) == ["A", "B"], "not every endpoint was tried"
    assert set(document) == {"error"}, document
    assert_error_document(document["error"], code, kind, contains)
    for leak in LEAKS:
        assert leak.encode() not in raw, f"{leak!r} in what the client saw: {raw[:800]!r}"

    # Streaming: the role chunk, the same error as an event, [DONE]...
    time.sleep(pause)
    exchange = Exchange({"model": model, "messages": prompt(tag)})
    chunks = exchange.stream.chunks
    assert exchange.stream.done and exchange.body.endswith(b"data: [DONE]\n\n")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [set(c) for c in chunks[1:]] == [{"error"}], chunks
    assert_error_document(chunks[1]["error"], code, kind, contains)
    assert chunks[1]["error"]["message"] == document["error"]["message"]
    for leak in LEAKS:
        assert leak.encode() not in exchange.raw, f"{leak!r} in what the client saw: {exchange.raw[:800]!r}"

    # ... on which openai-python raises APIError with that message.
    time.sleep(pause)
    with pytest.raises(openai.APIError) as raised:
        for _ in sdk("/v1").chat.completions.create(model=model, messages=prompt(tag), stream=True):
            pass
    assert raised.value.message == document["error"]["message"] and raised.value.code == code


def test_a_non_streaming_error_raises_the_sdk_exception_of_its_status(cluster):
    with pytest.raises(openai.BadRequestError) as raised:
        sdk("/v1").chat.completions.create(model="stub-context-400", messages=prompt(marker()))
    assert raised.value.code == "context_length_exceeded" and "2048" in raised.value.message
    with pytest.raises(openai.InternalServerError) as raised:
        sdk("/api").chat.completions.create(model="stub-fail-503", messages=prompt(marker()))
    assert raised.value.status_code == 502 and raised.value.code == "upstream_error"


# ----- failures after the first chunk ---------------------------------------------------------------------------


def assert_ends_with_an_error(exchange: Exchange, code: str) -> dict:
    """Content, then an OpenAI error event, then [DONE]: never a silent truncation."""
    body = exchange.body
    assert body.endswith(b"data: [DONE]\n\n"), f"not ended with [DONE]: {body[-400:]!r}"
    chunks = exchange.stream.chunks
    errors = [c for c in chunks if "error" in c]
    assert len(errors) == 1 and chunks[-1] is errors[0], f"not one error event, last: {chunks[-3:]}"
    assert set(errors[0]) == {"error"}
    assert_error_document(errors[0]["error"], code, "server_error", None)
    assert {c["id"] for c in chunks[:-1]} == {exchange.id}
    return errors[0]["error"]


MIDSTREAM = [
    # model, the content streamed before the failure, the error code
    ("stub-midstream-error-llamacpp", content_pieces("llamacpp")[:3], "upstream_error"),
    ("stub-midstream-error-vllm", content_pieces("vllm")[:3], "upstream_error"),
    ("stub-truncated-ollama", content_pieces("ollama")[:3], "upstream_error"),
    ("stub-drop", content_pieces("vllm")[:3], "upstream_error"),
    ("stub-drop-reset", content_pieces("vllm")[:3], "upstream_error"),
    ("stub-stall", content_pieces("openai")[:2], "upstream_timeout"),
]


@pytest.mark.parametrize("model, pieces, code", MIDSTREAM, ids=[m[0] for m in MIDSTREAM])
def test_a_failure_mid_stream_ends_with_an_error_event(cluster, upstreams, task_usage, model, pieces, code):
    tag = marker()
    exchange = Exchange({"model": model, "messages": prompt(tag), "stream_options": {"include_usage": True}})
    assert_ends_with_an_error(exchange, code)
    assert text_of(exchange.stream.chunks) == "".join(pieces)
    assert task_usage(exchange.task_id)["completion_tokens"] == len(pieces), "the usage does not count what streamed"
    if model == "stub-stall":  # the worker gave up on the upstream: it closed the request
        upstreams.wait_records(tag, lambda found: found and found[0]["outcome"] == "client_disconnected", timeout=5)

    seen = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in sdk().chat.completions.create(model=model, messages=prompt(marker()), stream=True):
            seen.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(seen) == "".join(pieces)
    assert raised.value.code == code


def test_a_failure_mid_stream_fails_a_non_streaming_client(cluster):
    status, document, raw = whole({"model": "stub-midstream-error-vllm", "messages": prompt(marker())})
    assert status >= 500, document
    assert set(document) == {"error"} and document["error"]["code"] == "upstream_error", document


# ----- cancel ----------------------------------------------------------------------------------------------------


class SlowStream:
    """A streaming request left open: read a few chunks, then cancel or close."""

    def __init__(self, body: dict, tag: str):
        self.tag = tag
        reply = request("POST", "/api/chat/completions", {"stream": True, **body})
        assert reply.status == 302, (reply.status, reply.body[:500])
        self.handoff = reply.json()
        self.location = reply.headers["Location"]
        self.token = urllib.parse.parse_qs(urllib.parse.urlsplit(self.location).query)["token"][0]
        self.conn = connect(timeout=READ_TIMEOUT)
        self.conn.request("GET", self.location, headers={"Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        self.events = iter_sse(self.response, deadline=time.monotonic() + 60)
        self.chunks: list[dict] = []

    def read_content_chunks(self, count: int) -> None:
        while sum(1 for c in self.chunks if c.get("choices") and c["choices"][0]["delta"].get("content")) < count:
            event = next(self.events)
            assert event["data"] != "[DONE]", self.chunks
            self.chunks.append(json.loads(event["data"]))

    def read_to_the_end(self) -> None:
        for event in self.events:
            if event["data"] == "[DONE]":
                return
            self.chunks.append(json.loads(event["data"]))
        raise AssertionError("the stream ended without [DONE]")

    def cancel(self) -> http.client.HTTPResponse:
        return request("POST", f"/api/chat/completions/{self.handoff['id']}/cancel?token={self.token}")

    def close(self) -> None:
        self.conn.close()


def test_cancel_closes_the_upstream_request(cluster, upstreams, task_usage):
    tag = marker()
    stream = SlowStream({"model": "stub-slow", "messages": prompt(tag), "stream_options": {"include_usage": True}}, tag)
    try:
        stream.read_content_chunks(5)
        reply = stream.cancel()
        cancelled_at = time.time()
        assert reply.status == 200, reply.body
        stream.read_to_the_end()
    finally:
        stream.close()
    [record] = upstreams.wait_records(tag, lambda found: found and found[0]["outcome"] is not None, timeout=5)
    assert record["outcome"] == "client_disconnected", record
    assert record["ended"] - cancelled_at < 2, (
        f"the upstream request was closed {record['ended'] - cancelled_at:.2f} s after the cancel"
    )
    seen = [
        c["choices"][0]["delta"]["content"]
        for c in stream.chunks
        if c.get("choices") and c["choices"][0]["delta"].get("content")
    ]
    assert seen == [f" tok{n}" for n in range(len(seen))], "chunks lost or reordered"
    assert finish_reasons(stream.chunks) == ["cancelled"]
    usage = task_usage(stream.handoff["task_id"])
    assert len(seen) <= usage["completion_tokens"] <= record["content_chunks"], (usage, len(seen), record)
    assert stream.chunks[-1]["usage"]["completion_tokens"] == usage["completion_tokens"]
