"""The `openai` backend against stub upstreams (upstream_stub.py, started by conftest.py): the stream shapes of
OpenAI, vLLM, Ollama and llama.cpp relayed with Handoff's id, created and model; everything else passed through; the
request forwarded whole; keys. Failover, the normalised errors, failures mid-stream and cancel are in
test_upstream_failures.py; what both share in upstream_e2e.py.

Each request carries a fresh marker in its prompt, so the stubs' records of it are found whatever ran before."""

from __future__ import annotations

import json
import time

import pytest
from stub_shapes import SHAPES, TOOL_ARGUMENTS, content_pieces, expected
from upstream_e2e import (
    TOOLS,
    Exchange,
    assert_forwarded,
    assert_relayed,
    finish_reasons,
    marker,
    merged_tool_calls,
    prompt,
    sdk,
    sub,
    text_of,
    typed,
    whole,
)

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
