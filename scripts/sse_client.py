"""The one SSE client of the tests and the benchmark: it turns the lines of a `text/event-stream` body into
events, keeping the comments (`: ping`, the benchmark's commit stamps) apart; `stream_events` POSTs a streaming
request and times each event it answers with."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from typing import Iterable, Iterator


def iter_sse(
    lines: Iterable[bytes | str], comments: list[str] | None = None, deadline: float | None = None
) -> Iterator[dict]:
    """Yields each SSE event as {"id": str | None, "data": str}; appends comment lines (without the colon) to
    `comments`. Fails if `deadline` (a time.monotonic() value) passes before the input ends."""
    event: dict = {}
    for raw in lines:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the stream did not end before its deadline")
        line = (raw.decode() if isinstance(raw, bytes) else raw).rstrip("\r\n")
        if line == "":
            if "data" in event:
                yield {"id": event.get("id"), "data": event["data"]}
            event = {}
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line[1:].strip())
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data" and "data" in event:
                event["data"] += "\n" + value
            elif field in ("id", "data"):
                event[field] = value
    if "data" in event:  # unterminated last event: report it, a test will notice the missing blank line
        yield {"id": event.get("id"), "data": event["data"], "unterminated": True}


def stream_events(url: str, body: dict) -> Iterator[tuple[float, dict]]:
    """POSTs `body` and yields (seconds since the POST, parsed chunk) per `data:` event other than `[DONE]`,
    following no redirect (the /v1 base URL answers the stream itself, so none comes)."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
    start = time.perf_counter()
    try:
        connection.request("POST", parsed.path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}: {response.read()[:300]!r}")
        for event in iter_sse(response):
            if event["data"] != "[DONE]":
                yield time.perf_counter() - start, json.loads(event["data"])
    finally:
        connection.close()
