"""The stub upstream's HTTP server (upstream_stub.py runs it): a threading server on 127.0.0.1 that records every
request it gets (the Recorder, served at /_stub/requests), reads request bodies, plain or chunked, within a bound, and
routes /health, /models and the recording; a POST to /chat/completions goes to stub_scenarios.py."""

from __future__ import annotations

import http.server
import json
import random
import socket
import sys
import threading
import time
import urllib.parse
from typing import Any

from stub_continuation import MODELS as CONTINUATION_MODELS
from stub_scenarios import Scenarios
from stub_shapes import SHAPES
from stub_wire import ClientGone, Stopping, Wire

MAX_BODY = 8 << 20


class Recorder:
    def __init__(self, name: str):
        self.name = name
        self.lock = threading.Lock()
        self.records: list[dict] = []

    def add(self, record: dict) -> dict:
        with self.lock:
            self.records.append(record)
        return record

    def update(self, record: dict, **fields) -> None:
        with self.lock:
            record.update(fields)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return json.loads(json.dumps(self.records))

    def clear(self) -> None:
        with self.lock:
            self.records.clear()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    recorder: Recorder
    seed: int | None
    counter: int = 0


class Handler(Scenarios, http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server
    server_version = "upstream-stub/1"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} stub {self.server.recorder.name}: {format % args}\n")

    # --- plumbing

    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict | None = None,
        chunked: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            wire = Wire(self, rng or random.Random())
            wire.send(body)
            wire.end()
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def reply_json(self, status: int, document: Any) -> None:
        self.reply(status, json.dumps(document).encode(), "application/json")

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            total = 0
            for _ in range(1_000_000):
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("request body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length)

    # --- routes

    def do_GET(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_stub/requests":
            self.reply_json(200, self.server.recorder.snapshot())
        elif path == "/health":
            self.reply_json(200, {"status": "ok", "stub": self.server.recorder.name})
        elif path.endswith("/models"):
            models = [*SHAPES, "reasoning", *CONTINUATION_MODELS]
            self.reply_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in models],
                },
            )
        else:
            self.reply_json(
                404,
                {
                    "error": {
                        "message": f"no route {path}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )

    def do_DELETE(self) -> None:  # noqa: N802
        if urllib.parse.urlsplit(self.path).path == "/_stub/requests":
            self.server.recorder.clear()
            self.reply_json(200, {"cleared": True})
        else:
            self.reply_json(
                404, {"error": {"message": "no route", "type": "invalid_request_error", "param": None, "code": None}}
            )

    def do_POST(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        record = self.server.recorder.add(
            {
                "stub": self.server.recorder.name,
                "path": path,
                "model": None,
                "body": None,
                "authorization": self.headers.get("Authorization"),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "started": time.time(),
                "ended": None,
                "outcome": None,
                "status": None,
                "content_chunks": 0,
            }
        )
        try:
            raw = self.read_body()
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
        except (ValueError, UnicodeDecodeError) as error:
            self.server.recorder.update(record, ended=time.time(), outcome="bad_request", status=400)
            self.reply_json(
                400,
                {
                    "error": {
                        "message": f"bad body: {error}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
            return
        model = body.get("model")
        self.server.recorder.update(record, model=model, body=body)
        if not path.endswith("/chat/completions"):
            self.server.recorder.update(record, ended=time.time(), outcome="rejected", status=404)
            self.reply_json(
                404,
                {
                    "error": {
                        "message": f"no route {path}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
            return
        with self.server.recorder.lock:
            self.server.counter += 1
            seed = (self.server.seed * 1_000_003 + self.server.counter) if self.server.seed is not None else None
        rng = random.Random(seed)
        outcome = "complete"
        try:
            outcome = self.complete(str(model), body, record, rng)
        except ClientGone:
            outcome = "client_disconnected"
            self.close_connection = True
        except Stopping:
            outcome = "stopped"
            self.close_connection = True
        finally:
            self.server.recorder.update(record, ended=time.time(), outcome=outcome)
            self.log_message(
                "%s -> %s (%d content chunks, %.2f s)",
                model,
                outcome,
                record["content_chunks"],
                record["ended"] - record["started"],
            )
