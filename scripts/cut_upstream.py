#!/usr/bin/env python3
"""A paced OpenAI-compatible upstream that fails mid-answer, for the benchmark's continuation scenario: a fresh
request (its last message not the assistant's) gets the role chunk and `--cut-after` content chunks (`--word` each),
one every `--delay-ms`, and then the connection is dropped (`--cut-after 0`: never); a request that ends with an
assistant message (Handoff's continuation by prefill) gets the rest of the answer, paced the same, with the finish
and usage chunks and `[DONE]`. It measures nothing itself.

    python scripts/cut_upstream.py --port 28091 --cut-after 10 --delay-ms 20 --word " a"
"""

from __future__ import annotations

import argparse
import asyncio
import json

from stub_http import read_request, serve_until_signalled


def event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def chunk(delta: dict, finish: str | None = None) -> bytes:
    return event(
        {
            "id": "chatcmpl-cut",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "cut",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


async def answer(writer: asyncio.StreamWriter, request: dict, cut_after: int, delay: float, word: str) -> None:
    messages = request.get("messages") or []
    continuing = bool(messages) and messages[-1].get("role") == "assistant"
    tokens = int(request.get("max_tokens") or 16)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
    writer.write(chunk({"role": "assistant", "content": ""}))
    cut = not continuing and 0 < cut_after < tokens
    for _ in range(cut_after if cut else tokens):
        await asyncio.sleep(delay)
        writer.write(chunk({"content": word}))
        await writer.drain()
    if cut:
        writer.transport.abort()  # the server died mid-answer: no finish, no [DONE]
        return
    writer.write(chunk({}, finish="length"))
    usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
    writer.write(
        event(
            {
                "id": "chatcmpl-cut",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "cut",
                "choices": [],
                "usage": usage,
            }
        )
    )
    writer.write(b"data: [DONE]\n\n")
    await writer.drain()


async def serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut_after: int, delay: float, word: str
) -> None:
    try:
        await answer(writer, await read_request(reader), cut_after, delay, word)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cut-after", type=int, default=10)
    parser.add_argument("--delay-ms", type=float, default=20)
    parser.add_argument("--word", default=" tok")
    options = parser.parse_args()
    await serve_until_signalled(
        lambda r, w: serve(r, w, options.cut_after, options.delay_ms / 1000, options.word), options.port
    )


if __name__ == "__main__":
    asyncio.run(main())
