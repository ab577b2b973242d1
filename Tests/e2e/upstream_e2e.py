"""What the tests of the `openai` backend against the stub upstreams (test_upstream.py, test_upstream_failures.py)
share: a fresh marker and prompt per request, the openai SDK on Caddy, a raw streaming exchange through `/api` and a
non-streaming one, the checks of what every relayed stream, forwarded request and error document must be, and a slow
stream left open to cancel.

Everything is bounded in time, as in handoff_e2e: sockets time out, streams have deadlines."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import uuid

import openai
from handoff_e2e import CADDY_PORT, Stream, connect, iter_sse, request

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


# ----- errors ------------------------------------------------------------------------------------------------------


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
