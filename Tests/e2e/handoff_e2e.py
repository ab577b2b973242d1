"""What the end-to-end tests share: the addresses of the system under test, a tiny HTTP client, the SSE parser
and the POST-then-follow-the-302 helper.

Everything here is bounded in time: every socket has a timeout and every stream a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import http.client
import json
import signal
import time
from typing import Any, Callable, ContextManager

import pytest
from sse_client import iter_sse  # noqa: F401  (re-exported: the tests import it from here)

CADDY_PORT = 18080
API_PORT = 18081
SSE_PORTS = (18082, 18083)
POOL_SIZE = 4
TOKEN_DELAY_MS = 20

# The first request of the README: its reply is the same on every machine.
README_BODY = (
    '{"model":"demo","stream":true,"stream_options":{"include_usage":true},'
    '"messages":[{"role":"user","content":"Tell me a three sentence bedtime story about a unicorn."}]}'
)
GOLDEN = (
    "Once upon a time, the oldest unicorn in the valley counted the stars until they began to sing and everyone "
    "slept soundly. Every night, a tiny unicorn with a golden mane found a lantern that never went out until the "
    "moon whispered goodnight. Under a sky full of stars, the oldest unicorn in the valley found a lantern that "
    "never went out and the whole forest smiled."
)

SOCKET_TIMEOUT = 30  # seconds any single read may wait (the keepalive interval is 15 s)


@dataclasses.dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(port: int = CADDY_PORT, timeout: float = SOCKET_TIMEOUT) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def request(
    method: str,
    path: str,
    body: bytes | str | dict | None = None,
    headers: dict | None = None,
    port: int = CADDY_PORT,
    timeout: float = SOCKET_TIMEOUT,
) -> Reply:
    """One request on a fresh connection, body read whole. A dict body is sent as JSON."""
    headers = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    conn = connect(port, timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


@dataclasses.dataclass
class Stream:
    """A whole chat-completion stream, as a client saw it."""

    events: list[dict]
    comments: list[str]
    replica: str | None = None

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1]["data"] == "[DONE]"

    @property
    def chunks(self) -> list[dict]:
        return [json.loads(e["data"]) for e in self.events if e["data"] != "[DONE]"]

    @property
    def content_chunks(self) -> list[dict]:
        """Chunks carrying a reply token (the first chunk carries the role and an empty content)."""
        return [
            c
            for c in self.chunks
            if c["choices"] and "role" not in c["choices"][0]["delta"] and "content" in c["choices"][0]["delta"]
        ]

    @property
    def text(self) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in self.chunks if c["choices"])

    @property
    def finish_reasons(self) -> list[str]:
        return [
            c["choices"][0]["finish_reason"]
            for c in self.chunks
            if c["choices"] and c["choices"][0].get("finish_reason") is not None
        ]


def read_stream(response: http.client.HTTPResponse, timeout: float = 60) -> Stream:
    comments: list[str] = []
    events = list(iter_sse(response, comments, deadline=time.monotonic() + timeout))
    return Stream(events, comments, response.getheader("X-Handoff-Replica"))


def get_stream(
    path: str, timeout: float = 60, while_open: Callable[[], ContextManager] = contextlib.nullcontext
) -> Stream:
    """GETs an SSE URL through Caddy and reads the stream to its end; `while_open()` wraps the reading."""
    conn = connect()
    try:
        conn.request("GET", path, headers={"Accept": "text/event-stream"})
        response = conn.getresponse()
        if response.status != 200:
            raise AssertionError(f"GET {path} answered {response.status}: {response.read()[:500]!r}")
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        with while_open():
            return read_stream(response, timeout)
    finally:
        conn.close()


def post_and_follow(
    body: dict,
    path: str = "/api/chat/completions",
    timeout: float = 60,
    while_open: Callable[[], ContextManager] = contextlib.nullcontext,
) -> tuple[dict, Stream]:
    """POSTs a streaming completion through Caddy, checks the 302 hand-off and follows it; returns (hand-off body,
    stream)."""
    reply = request("POST", path, {"stream": True, **body})
    if reply.status != 302:
        raise AssertionError(f"POST {path} answered {reply.status}, not 302: {reply.body[:500]!r}")
    handoff = reply.json()
    location = reply.headers["Location"]
    assert location == handoff["stream_url"], (location, handoff)
    return handoff, get_stream(location, timeout, while_open)


def sign_stream_token(secret: str, task_id: str, ttl: int = 600) -> str:
    """A token the SSE servers accept for `task_id`: `<expiry>.<base64url HMAC-SHA256>`, as the API signs it."""
    expires = int(time.time()) + ttl
    mac = hmac.new(secret.encode(), f"handoff-stream-v1|{task_id}|{expires}".encode(), hashlib.sha256).digest()
    return f"{expires}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def assert_well_formed(stream: Stream, completion_id: str | None = None) -> None:
    """What every Handoff stream must be: events numbered 1, 2, 3, ..., each with one chunk of one completion
    (role chunk first), then an id-less `data: [DONE]`; nothing but `: ping` comments in between."""
    assert stream.events, "the stream had no events"
    assert stream.done, f"the stream did not end with data: [DONE]; last event: {stream.events[-1]}"
    assert stream.events[-1]["id"] is None, "[DONE] carries an id"
    numbered = stream.events[:-1]
    assert [e["id"] for e in numbered] == [str(n) for n in range(1, len(numbered) + 1)], (
        "event ids are not 1, 2, 3, ..."
    )
    assert not any(e.get("unterminated") for e in stream.events), "the last event is not followed by a blank line"
    assert set(stream.comments) <= {"ping"}, stream.comments
    chunks = stream.chunks
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}, "chunks of one stream carry different ids"
    assert chunks[0]["id"].startswith("chatcmpl-")
    if completion_id is not None:
        assert chunks[0]["id"] == completion_id, "the stream's id is not the one the POST answered"
    assert len({c["created"] for c in chunks}) == 1, "chunks of one stream carry different `created`"
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "demo" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


def wait_started(stack, routed: bool = True, timeout: float = 60) -> None:
    """Until a fixture's own stack answers its health checks (and, with `routed`, streams reach every replica through
    its Caddy); else fails the fixture with the stack's log tails."""
    try:
        stack.wait_healthy(time.monotonic() + timeout)
        if routed:
            stack.wait_routed(time.monotonic() + timeout)
    except (RuntimeError, OSError) as error:
        raise pytest.fail.Exception(f"the stack did not start: {error}\n{stack.log_tails()}", pytrace=False) from None


def start_with_workers(
    stack, settings: dict[str, str], worker_settings: dict[str, str], names: tuple[str, ...]
) -> None:
    """Starts `stack` with one worker per name, each with `worker_settings`, in place of its own: a test kills the one
    running its task (`kill_holder`) and another continues it."""
    stack.start_services(settings=settings, worker=False)
    for name in names:
        stack.start_worker(stack.commands["api"][1], worker_settings, name=name)
    wait_started(stack)


def kill_holder(stack, names: tuple[str, ...], task) -> str:
    """SIGKILLs whichever of the workers `names` holds `task`; returns its name."""
    holder = stack.sql(f"SELECT worker_id FROM handoff_tasks WHERE id = '{task}'")
    [victim] = [name for name in names if f"-{stack.pid(name)}-" in holder]
    stack.signal(victim, signal.SIGKILL).wait(timeout=5)
    return victim
