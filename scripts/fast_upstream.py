#!/usr/bin/env python3
"""A zero-delay OpenAI-compatible upstream for the benchmark: `POST /v1/chat/completions` answers at once with a
stream of `max_tokens` content chunks (one short word each, OpenAI's chunk shape and size), the finish chunk, the
usage chunk and `[DONE]`, written as fast as the socket takes them. It measures nothing itself; it is what
Handoff relays, so the bench can tell Handoff's cost per chunk from the model's.

    python scripts/fast_upstream.py --port 28090
"""

from __future__ import annotations

import argparse
import asyncio
import json

from stub_http import read_request, serve_until_signalled

WORDS = ["Once", " upon", " a", " time", ",", " a", " unicorn", " slept", "."]


def chunk(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def reply(tokens: int, model: str) -> bytes:
    head = {
        "id": "chatcmpl-fast",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "system_fingerprint": "fp_fast",
    }
    parts = [
        chunk(
            {
                **head,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                ],
                "usage": None,
            }
        )
    ]
    for index in range(tokens):
        parts.append(
            chunk(
                {
                    **head,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"content": WORDS[index % len(WORDS)]},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ],
                    "usage": None,
                }
            )
        )
    parts.append(
        chunk(
            {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}], "usage": None}
        )
    )
    parts.append(
        chunk(
            {
                **head,
                "choices": [],
                "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens},
            }
        )
    )
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    cache: dict[tuple[int, str], bytes] = {}
    try:
        while True:  # keep-alive: one request after another on the connection
            request = await read_request(reader)
            key = (int(request.get("max_tokens") or 16), str(request.get("model", "fast")))
            body = cache.get(key) or cache.setdefault(key, reply(*key))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    await serve_until_signalled(serve, options.port)


if __name__ == "__main__":
    asyncio.run(main())
