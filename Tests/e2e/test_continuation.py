"""Continuation: an upstream that fails after streaming text, on a model whose servers continue answers (`continuation`
in the catalogue), gets the same request again with the text so far as a trailing assistant message, and the rest of
the answer follows on in the client's stream as if nothing had happened: one completion id, one role chunk, event ids
without a gap, no error, the usage of every attempt. What cannot be continued ends with an error event that says
why. The stub's models are stub_continuation.py's; the catalogue's are catalogue_e2e.py's `stub-continued*`.

Each request carries a fresh marker in its prompt, so the stubs' records of it are found whatever ran before."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
from catalogue_e2e import CONTINUED_BACKOFF_MS
from stub_continuation import ANSWER, CUTS
from stub_shapes import TOOL_ARGUMENTS
from upstream_e2e import (
    TOOLS,
    Exchange,
    assert_ends_with_an_error,
    finish_reasons,
    marker,
    merged_tool_calls,
    prompt,
    sdk,
    sub,
    text_of,
    whole,
)

WHOLE = "".join(ANSWER)
NOT_CONTINUED = " The answer was not continued: "


def assert_one_answer(exchange: Exchange, model: str) -> list[dict]:
    """One completion, whole: [DONE] at the end, event ids 1..N, one id, one role chunk (the first), no error."""
    stream = exchange.stream
    assert stream.done and exchange.body.endswith(b"data: [DONE]\n\n"), (
        f"no [DONE] at the end: {exchange.body[-400:]!r}"
    )
    numbered = stream.events[:-1]
    assert [e["id"] for e in numbered] == [str(n) for n in range(1, len(numbered) + 1)], [e["id"] for e in numbered]
    assert not any(e.get("unterminated") for e in stream.events)
    chunks = stream.chunks
    assert not [c for c in chunks if "error" in c], f"an error event in a continued answer: {chunks[-3:]}"
    assert {c["id"] for c in chunks} == {exchange.id}, "a chunk of the continuation has another completion id"
    assert len({c["created"] for c in chunks}) == 1 and {c["model"] for c in chunks} == {model}
    roles = [c for c in chunks if c["choices"] and "role" in c["choices"][0]["delta"]]
    assert roles == [chunks[0]] and chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}, roles
    return chunks


def contents(chunks: list[dict]) -> list[str]:
    return [
        c["choices"][0]["delta"]["content"]
        for c in chunks[1:]
        if c.get("choices") and c["choices"][0]["delta"].get("content")
    ]


def settled(tag: str, count: int):
    """A wait_records readiness: at least `count` records of `tag`, all of them over."""
    return lambda found: len(found) >= count and all(r["outcome"] is not None for r in found)


def without(body: dict, *keys: str) -> dict:
    return {k: v for k, v in body.items() if k not in keys}


def assert_continues(first: dict, then: dict, text: str, limit: str, produced: int) -> None:
    """`then` is `first` again with `text` as a trailing assistant message and `limit` less the tokens produced."""
    sent, again = first["body"], then["body"]
    assert again["messages"] == [*sent["messages"], {"role": "assistant", "content": text}], again
    assert again[limit] == max(1, sent[limit] - produced), (sent, again)
    same = ("messages", limit, "continue_final_message", "add_generation_prompt")
    assert without(again, *same) == without(sent, *same), "the continuation is not the same request"


# ----- continued -------------------------------------------------------------------------------------------------


def test_an_answer_cut_mid_stream_is_continued_in_the_same_stream(cluster, upstreams, task_usage):
    tag = marker()
    body = {
        "model": "stub-continued",
        "messages": prompt(tag),
        "max_tokens": 50,
        "stream_options": {"include_usage": True},
    }
    exchange = Exchange(body)
    chunks = assert_one_answer(exchange, "stub-continued")
    assert text_of(chunks) == WHOLE
    assert contents(chunks) == ANSWER, "a piece was lost, repeated or split (the half event relayed?)"
    assert finish_reasons(chunks) == ["stop"]

    records = upstreams.wait_records(tag, settled(tag, 2))
    assert len(records) == 2, records
    first, then = records
    assert (first["outcome"], first["content_chunks"]) == ("dropped", CUTS["continued"]), first
    assert (then["outcome"], then["status"]) == ("complete", 200), then
    assert then["stub"] != first["stub"], "the failed endpoint was asked again while the other one was free"
    assert then["started"] >= first["cut_at"]
    # What the client had before the cut is what was continued; the tokens streamed come off max_tokens.
    before_the_cut = "".join(contents(chunks)[: first["content_chunks"]])
    assert before_the_cut == "".join(ANSWER[: CUTS["continued"]])
    assert first["body"]["max_tokens"] == 50
    assert_continues(first, then, before_the_cut, "max_tokens", CUTS["continued"])
    assert "continue_final_message" not in then["body"] and "add_generation_prompt" not in then["body"]

    # The usage: both attempts' prompts as the stub counted them, every chunk of the answer; alone, at the end.
    usage = chunks[-1]
    assert usage["choices"] == [] and all(c.get("usage") is None for c in chunks[:-1]), chunks[-2:]
    prompts = first["usage"]["prompt_tokens"] + then["usage"]["prompt_tokens"]
    assert sub(usage["usage"]) == {
        "prompt_tokens": prompts,
        "completion_tokens": len(ANSWER),
        "total_tokens": prompts + len(ANSWER),
    }, usage
    assert first["usage"]["completion_tokens"] + then["usage"]["completion_tokens"] == len(ANSWER)
    assert sub(task_usage(exchange.task_id)) == sub(usage["usage"])


def test_openai_python_gets_the_whole_continued_answer(cluster, upstreams):
    tag = marker()
    stream = sdk().chat.completions.create(model="stub-continued", messages=prompt(tag), stream=True, max_tokens=40)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == WHOLE
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert len({c.id for c in chunks}) == 1
    assert [r["outcome"] for r in upstreams.wait_records(tag, settled(tag, 2))] == ["dropped", "complete"]

    # Not streaming, the same: the answer is collected from the continued stream.
    tag = marker()
    status, completion, _ = whole({"model": "stub-continued", "messages": prompt(tag)})
    assert status == 200 and completion["choices"][0]["message"]["content"] == WHOLE, completion
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["completion_tokens"] == len(ANSWER), completion["usage"]


def test_vllm_continues_the_final_message(cluster, upstreams):
    tag = marker()
    exchange = Exchange({"model": "stub-continued-vllm", "messages": prompt(tag)})  # no max_tokens: the task's cap
    chunks = assert_one_answer(exchange, "stub-continued-vllm")
    assert contents(chunks) == ANSWER and finish_reasons(chunks) == ["stop"]
    first, then = upstreams.wait_records(tag, settled(tag, 2))
    assert first["outcome"] == "dropped" and then["outcome"] == "complete" and then["stub"] != first["stub"]
    assert "continue_final_message" not in first["body"] and "add_generation_prompt" not in first["body"]
    assert (then["body"]["continue_final_message"], then["body"]["add_generation_prompt"]) == (True, False)
    assert isinstance(first["body"]["max_tokens"], int), "the task's cap was not sent"
    assert_continues(first, then, "".join(ANSWER[: CUTS["continued-vllm"]]), "max_tokens", CUTS["continued-vllm"])


def test_a_single_upstream_continues_after_its_backoff(cluster, upstreams):
    tag = marker()
    exchange = Exchange({"model": "stub-continued-one", "messages": prompt(tag), "max_tokens": 30})
    chunks = assert_one_answer(exchange, "stub-continued-one")
    assert contents(chunks) == ANSWER
    first, then = upstreams.wait_records(tag, settled(tag, 2))
    assert (first["stub"], first["outcome"], then["stub"], then["outcome"]) == ("A", "dropped", "A", "complete")
    waited = then["started"] - first["cut_at"]
    assert CONTINUED_BACKOFF_MS / 1000 <= waited < CONTINUED_BACKOFF_MS / 1000 + 5, f"asked again {waited:.3f} s after"
    assert_continues(first, then, "".join(ANSWER[: CUTS["continued"]]), "max_tokens", CUTS["continued"])


def test_an_answer_is_continued_at_most_twice(cluster, upstreams):
    """Every reply of stub-continued-flaky is cut: HANDOFF_MAX_CONTINUATIONS (2) continuations, then the error."""
    tag = marker()
    cut = CUTS["continued-flaky"]
    exchange = Exchange({"model": "stub-continued-flaky", "messages": prompt(tag), "max_completion_tokens": 40})
    error = assert_ends_with_an_error(exchange, "upstream_error")
    assert error["message"].endswith(NOT_CONTINUED + "it was continued 2 times already."), error
    chunks = exchange.stream.chunks
    assert contents(chunks) == ANSWER[: 3 * cut]
    assert [c for c in chunks if c.get("choices") and "role" in c["choices"][0]["delta"]] == [chunks[0]]
    numbered = exchange.stream.events[:-1]
    assert [e["id"] for e in numbered] == [str(n) for n in range(1, len(numbered) + 1)]
    records = upstreams.wait_records(tag, settled(tag, 3))
    assert [r["outcome"] for r in records] == ["dropped"] * 3, records
    assert "max_tokens" not in records[0]["body"]
    for n in (1, 2):
        assert_continues(records[0], records[n], "".join(ANSWER[: n * cut]), "max_completion_tokens", n * cut)
    time.sleep(0.5)
    assert len(upstreams.records(tag)) == 3, "a third continuation"


# ----- not continued -----------------------------------------------------------------------------------------------

NOT_CONTINUABLE = [
    # model, what the request adds, why it is not continued
    ("stub-continued-tools", {"tools": TOOLS}, "it has tool calls"),
    ("stub-continued-flaky", {"logprobs": True, "top_logprobs": 1}, "its logprobs would not continue"),
]


@pytest.mark.parametrize("model, extra, reason", NOT_CONTINUABLE, ids=["tool-calls", "logprobs"])
def test_what_cannot_be_continued_ends_with_an_error_that_says_why(cluster, upstreams, model, extra, reason):
    tag = marker()
    exchange = Exchange({"model": model, "messages": prompt(tag), **extra})
    error = assert_ends_with_an_error(exchange, "upstream_error")
    assert error["message"].endswith(f"{NOT_CONTINUED}{reason}."), error
    assert error["message"].count(NOT_CONTINUED) == 1
    chunks = exchange.stream.chunks
    if "tools" in extra:
        calls = merged_tool_calls(c["choices"][0]["delta"].get("tool_calls") for c in chunks if c.get("choices"))
        assert [(c["name"], c["arguments"]) for c in calls.values()] == [("get_weather", "".join(TOOL_ARGUMENTS[:2]))]
    else:
        assert contents(chunks) == ANSWER[: CUTS["continued-flaky"]]
    time.sleep(0.5)
    assert [r["outcome"] for r in upstreams.wait_records(tag, settled(tag, 1))] == ["dropped"], "it was continued"


def test_a_model_without_continuation_fails_as_before(cluster, upstreams):
    exchange = Exchange({"model": "stub-drop", "messages": prompt(marker())})
    error = assert_ends_with_an_error(exchange, "upstream_error")
    assert "continued" not in error["message"], error


# ----- metrics -----------------------------------------------------------------------------------------------------

SERIES = re.compile(r"^(\w+)(?:\{(.*)\})?\s+(\S+)$")


def continuations(port: int) -> dict[tuple[str, str], float]:
    """handoff_continuations_total of the worker's /metrics, by (model, outcome)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    found = {}
    for line in lines:
        if (match := SERIES.match(line)) and match[1] == "handoff_continuations_total":
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
            found[labels["model"], labels["outcome"]] = float(match[3])
    return found


def test_the_worker_counts_continuations_by_outcome(cluster, upstreams):
    port = cluster.worker_ports["worker"]
    before = continuations(port)
    assert_one_answer(Exchange({"model": "stub-continued", "messages": prompt(marker())}), "stub-continued")
    assert_ends_with_an_error(
        Exchange({"model": "stub-continued-tools", "messages": prompt(marker()), "tools": TOOLS}), "upstream_error"
    )
    assert_ends_with_an_error(
        Exchange({"model": "stub-continued-flaky", "messages": prompt(marker())}), "upstream_error"
    )
    assert_ends_with_an_error(Exchange({"model": "stub-drop", "messages": prompt(marker())}), "upstream_error")
    want = {
        ("stub-continued", "completed"): 1,
        ("stub-continued-tools", "not_continuable"): 1,
        ("stub-continued-flaky", "failed"): 1,
    }
    deadline = time.monotonic() + 5
    while True:
        after = continuations(port)
        moved = {key: after.get(key, 0) - before.get(key, 0) for key in {*before, *after}}
        if {key: value for key, value in moved.items() if value} == want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {key: value for key, value in moved.items() if value} == want, after
    assert not [key for key in after if key[0] == "stub-drop"], "a model that never continues counted"
