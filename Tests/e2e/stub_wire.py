"""How the stub upstream (upstream_stub.py) writes a response body: chunked, cut at random byte boundaries and always
inside each multi-byte UTF-8 character and between each `\\r` and `\\n`, one HTTP chunk per piece with a short pause;
noticing a client that leaves (ClientGone) and a stub that stops (Stopping, once STOP is set); and closing a
connection mid-body with a FIN or a RST."""

from __future__ import annotations

import http.server
import random
import select
import socket
import struct
import threading
import time

PIECE_PAUSE = 0.001

STOP = threading.Event()


class ClientGone(Exception):
    pass


class Stopping(Exception):
    pass


def cut_points(data: bytes, rng: random.Random) -> list[int]:
    """Random cuts, plus one inside every multi-byte UTF-8 character and one between every \\r and \\n."""
    cuts = set()
    position = 0
    while position < len(data):
        position += rng.randint(1, 64)
        cuts.add(position)
    for i, byte in enumerate(data):
        if byte >= 0xC0:  # the lead byte of a multi-byte character: cut after it, or later inside it
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            cuts.add(i + rng.randint(1, length - 1))
        elif byte == 0x0D and i + 1 < len(data) and data[i + 1] == 0x0A:
            cuts.add(i + 1)
    return sorted(c for c in cuts if 0 < c < len(data))


class Wire:
    """Writes a chunked body piece by piece, noticing a client that leaves and a stub that stops."""

    def __init__(self, handler: http.server.BaseHTTPRequestHandler, rng: random.Random):
        self.handler = handler
        self.sock: socket.socket = handler.connection
        self.rng = rng

    def _raw(self, data: bytes) -> None:
        try:
            self.handler.wfile.write(data)
        except OSError as error:  # BrokenPipeError, ConnectionResetError, ...
            raise ClientGone() from error

    def check(self) -> None:
        """Raises ClientGone when the client closed its side, Stopping when the stub is shutting down."""
        if STOP.is_set():
            raise Stopping()
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            closed = bool(readable) and self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            closed = False
        except OSError as error:  # reset by the peer
            raise ClientGone() from error
        if closed:
            raise ClientGone()

    def pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.02, left))

    def send(self, data: bytes, coarse: bool = False) -> None:
        """One HTTP chunk per piece of `data`, each followed by a short pause."""
        if not data:
            return
        self.check()
        cuts = [len(data) // 2] if coarse and len(data) > 1 else cut_points(data, self.rng)
        start = 0
        for end in [*cuts, len(data)]:
            piece = data[start:end]
            start = end
            self._raw(b"%x\r\n" % len(piece) + piece + b"\r\n")
            time.sleep(PIECE_PAUSE)

    def end(self) -> None:
        self._raw(b"0\r\n\r\n")

    def end_after_done(self) -> None:
        """The last chunk after `data: [DONE]`: a client may close as soon as it has read [DONE], and has then had
        the whole stream."""
        try:
            self.end()
        except ClientGone:
            self.handler.close_connection = True

    def drop(self, reset: bool) -> None:
        """Closes the connection mid-body: a FIN, or a RST."""
        self.handler.close_connection = True
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.sock.close()
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
