"""The `openai` backend against stub upstreams when they fail (upstream_stub.py, started by conftest.py): failover
before the first chunk, invisible to the client; the least busy endpoint first; errors before the first chunk
normalised to OpenAI's, leaking no internal address or key; failures after the first chunk ended with an error event;
cancel closing the upstream request. The relayed streams themselves are in test_upstream.py.

Each request carries a fresh marker in its prompt, so the stubs' records of it are found whatever ran before."""

from __future__ import annotations

import time

import openai
import pytest
from stub_shapes import content_pieces, expected
from upstream_e2e import (
    LEAKS,
    Exchange,
    SlowStream,
    assert_ends_with_an_error,
    assert_error_document,
    assert_relayed,
    finish_reasons,
    marker,
    prompt,
    sdk,
    sub,
    text_of,
    whole,
)

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
