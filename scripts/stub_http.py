"""What the benchmark's stub upstreams share: reading one JSON request off a connection, and serving until SIGTERM
or SIGINT. Just enough HTTP/1.1 for Handoff's worker, which sends `Content-Length` bodies."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Awaitable, Callable


async def read_request(reader: asyncio.StreamReader) -> dict:
    """The next request's JSON body ({} without one); raises `asyncio.IncompleteReadError` when the client is gone."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    return json.loads(await reader.readexactly(length)) if length else {}


async def serve_until_signalled(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], port: int
) -> None:
    """Serves `handle` on 127.0.0.1:`port` until SIGTERM or SIGINT."""
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
