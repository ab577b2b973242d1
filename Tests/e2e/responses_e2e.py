"""What test_responses.py shares: the official openai SDK pointed at Handoff's Responses API (strict validation, no
retries), bounded reading of its event streams, a raw reader for a replica's own port, and the checks every
Responses event stream must pass (order, dense sequence numbers from 0, one response id, the text and its usage).

Events are checked as dicts (`to_dict()` of the SDK's objects, or the raw JSON), so that both readers share them.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid
from typing import Callable

import openai
from handoff_e2e import API_PORT, CADDY_PORT, GOLDEN, connect, request

PROMPT = "Tell me a three sentence bedtime story about a unicorn."  # the demo answers GOLDEN, 67 tokens, 10 in
PROMPT_TOKENS, GOLDEN_TOKENS = 10, 67
LONG = "Tell me a long story about a lighthouse keeper."  # any other prompt runs to max_output_tokens
RESPONSE_ID = re.compile(r"resp_[0-9a-f]{32}")
READ_TIMEOUT = 30  # seconds any single read may wait (the keepalive interval is 15 s)
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
TEXT_EVENTS = ("response.output_text.delta", "response.output_text.done")
# Every field of a Response that OpenAI always sends (null where it has no value).
RESPONSE_FIELDS = {
    "id",
    "object",
    "created_at",
    "status",
    "background",
    "completed_at",
    "error",
    "incomplete_details",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "model",
    "output",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt_cache_key",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "usage",
    "user",
    "metadata",
}


def sdk(port: int = CADDY_PORT, base: str = "/v1", key: str = "unused", timeout: float = READ_TIMEOUT) -> openai.OpenAI:
    # No retries: a retried POST would be a second response.
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}{base}",
        api_key=key,
        max_retries=0,
        timeout=timeout,
        _strict_response_validation=True,
    )


def task_of(response_id: str) -> str:
    """The task (a UUID) behind `resp_<32 hex>`."""
    assert RESPONSE_ID.fullmatch(response_id), response_id
    return str(uuid.UUID(hex=response_id.removeprefix("resp_")))


def deltas(events: list[dict]) -> int:
    return sum(1 for e in events if e["type"] == "response.output_text.delta")


def take(stream, stop: Callable[[list[dict]], bool] | None = None, deadline: float = 60) -> list[dict]:
    """Events of an SDK stream as dicts, until `stop(events)` or the end; each read is bounded by the client's timeout,
    the whole by `deadline` seconds."""
    end = time.monotonic() + deadline
    events: list[dict] = []
    for event in stream:
        events.append(event.to_dict(warnings=False))  # (the high-level stream's parsed types warn)
        if stop is not None and stop(events):
            break
        assert time.monotonic() < end, f"the stream did not end within {deadline} s: {len(events)} events"
    return events


def text_of(events: list[dict]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def expected_types(background: bool, count: int, terminal: str = "response.completed") -> list[str]:
    head = (
        ["response.created"]
        + (["response.queued"] if background else [])
        + ["response.in_progress", "response.output_item.added", "response.content_part.added"]
    )
    tail = ["response.output_text.done", "response.content_part.done", "response.output_item.done", terminal]
    return head + ["response.output_text.delta"] * count + tail


def check_events(events: list[dict], background: bool, terminal: str = "response.completed") -> dict:
    """A whole stream, from sequence number 0 to its terminal event: returns the terminal event's Response."""
    assert [e["sequence_number"] for e in events] == list(range(len(events))), [e["sequence_number"] for e in events]
    types = [e["type"] for e in events]
    if terminal == "response.failed":  # may follow a delta: no *.done needed
        assert types[: len(expected_types(background, 0)) - 4] == expected_types(background, 0)[:-4], types[:6]
        assert types[-1] == terminal and terminal not in types[:-1], types[-6:]
    else:
        assert types == expected_types(background, deltas(events), terminal), types
    lifecycle = [e["response"] for e in events if "response" in e]
    assert {r["id"] for r in lifecycle} == {lifecycle[0]["id"]} and RESPONSE_ID.fullmatch(lifecycle[0]["id"]), (
        "lifecycle events carry different or malformed ids"
    )
    assert lifecycle[0]["status"] == ("queued" if background else "in_progress") and lifecycle[0]["output"] == []
    assert all(r["background"] is background and r["model"] == "demo" for r in lifecycle)
    items = {e.get("item_id") or e["item"]["id"] for e in events if "item_id" in e or "item" in e}
    assert len(items) <= 1 and all(i.startswith("msg_") for i in items), items
    assert all(e["output_index"] == 0 for e in events if "output_index" in e)
    assert all(e["content_index"] == 0 for e in events if "content_index" in e)
    assert all(e["logprobs"] == [] for e in events if e["type"] in TEXT_EVENTS), "text events without logprobs []"
    text = text_of(events)
    for e in events:
        if e["type"] == "response.output_text.done":
            assert e["text"] == text
        if e["type"] in ("response.content_part.done", "response.output_item.done"):
            assert (e.get("part") or e["item"]["content"][0])["text"] == text
    final = events[-1]["response"]
    assert final["status"] == terminal.removeprefix("response."), final["status"]
    return final


def check_usage(usage: dict, output_tokens: int) -> None:
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (
        PROMPT_TOKENS,
        output_tokens,
        PROMPT_TOKENS + output_tokens,
    ), usage
    assert usage["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}, usage
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}, usage


def check_golden(final: dict) -> None:
    """The README prompt's Response, completed."""
    [message] = final["output"]
    assert (message["type"], message["role"], message["status"]) == ("message", "assistant", "completed"), message
    assert [part["text"] for part in message["content"]] == [GOLDEN]
    assert final["completed_at"] and final["error"] is None and final["incomplete_details"] is None, final
    check_usage(final["usage"], GOLDEN_TOKENS)


# ----- raw: a replica's own port ------------------------------------------------------------------------------


def handoff_path(response_id: str, starting_after: int | None = None) -> str:
    """The SSE path the API hands a stream of `response_id` off to (its 302 on the API's own port)."""
    query = "stream=true" + (f"&starting_after={starting_after}" if starting_after is not None else "")
    reply = request("GET", f"/v1/responses/{response_id}?{query}", port=API_PORT)
    assert reply.status == 302, f"GET /v1/responses/{response_id}?{query} answered {reply.status}: {reply.body[:300]!r}"
    location = reply.headers["Location"]
    assert urllib.parse.urlsplit(location).path.startswith("/sse/responses/"), location
    return location


def read_raw(
    port: int, path: str, stop: Callable[[list[dict]], bool] | None = None, deadline: float = 60
) -> tuple[list[dict], bool]:
    """GETs an event stream on `port` and parses it by hand: (events, ended), `ended` when the server closed it.
    Checks the framing: `event:` names the data's type, no `id:` lines, no [DONE]."""
    conn = connect(port, READ_TIMEOUT)
    end = time.monotonic() + deadline
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        response = conn.getresponse()
        assert response.status == 200, f"GET {path} on {port} answered {response.status}: {response.read()[:300]!r}"
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        events: list[dict] = []
        block: dict[str, str] = {}
        for raw in response:
            assert time.monotonic() < end, f"the stream on {port} did not end within {deadline} s"
            line = raw.decode().rstrip("\r\n")
            if line.startswith(":"):
                continue
            if line:
                field, _, value = line.partition(":")
                assert field in ("event", "data"), f"unexpected SSE field {line!r}"
                block[field] = block.get(field, "") + value.removeprefix(" ")
                continue
            if block:
                assert block["data"] != "[DONE]", "a Responses stream sent [DONE]"
                event = json.loads(block["data"])
                assert block.get("event") == event["type"], block
                events.append(event)
                block = {}
                if stop is not None and stop(events):
                    return events, False
        return events, True
    finally:
        conn.close()
