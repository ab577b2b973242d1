"""A stand-in for the OpenAI-compatible servers Handoff's worker streams from: it replays the stream shapes of OpenAI,
vLLM, Ollama's /v1 and llama.cpp's llama-server, and their failures, chosen by the `model` of the request.

    python Tests/e2e/upstream_stub.py --port 18090 [--name A] [--seed N] [--max-seconds S]

Listens on 127.0.0.1 only. Stdlib only. Every response body is sent with `Transfer-Encoding: chunked`, cut at random
byte boundaries (and always inside each multi-byte UTF-8 character and between each `\\r` and `\\n`), one HTTP chunk
per piece with a short pause, so a client sees each piece as a separate read.

Models (the `model` field of the request):
  openai, vllm, ollama, llamacpp   a normal stream in that server's shape (tools -> tool_calls, logprobs -> logprobs)
  reasoning                        vLLM shape, `reasoning_content` deltas first, then content
  slow-first                       openai shape, first chunk 1.5 s after the headers
  slow                             openai shape, one content chunk every 50 ms, up to 2,000, until the client leaves
  stall                            openai shape, 2 content chunks, then 60 s of silence
  midstream-error-llamacpp         3 content chunks, `data: {"error":...}`, end (no [DONE], no usage)
  midstream-error-vllm             3 content chunks, `data: {"error":...}`, `data: [DONE]`
  truncated-ollama                 3 content chunks, then a clean end of the body: no finish chunk, no [DONE]
  drop                             3 content chunks, then the TCP connection is closed (FIN) without the last chunk
  drop-reset                       the same, closed with a RST
  fail-503                         503, an Envoy-style plain-text body naming an internal address
  fail-502                         502, nginx's HTML page naming an internal address
  fail-500-json                    500, llama.cpp-style JSON error whose message names an internal URL
  fail-429                         429, `Retry-After: 1`, OpenAI's rate-limit JSON
  fail-401                         401, OpenAI's invalid-key JSON, echoing the key it was sent
  fail-404                         404, OpenAI's model_not_found JSON
  context-400                      400, llama.cpp's exceed_context_size_error (n_ctx 2048)
  vllm-context-400                 400, vLLM's nested context-length error (the limit, 2048, in the message only)
  openai-context-400               400, OpenAI's context_length_exceeded error
  old-vllm-400                     400, older vLLM's flat `{"object":"error",...}` (not a context error)
  long-line                        openai shape, 2 content chunks, then one `data:` line of 4 MiB that never ends
  flood                            openai shape, content chunks of 1 KiB until 4 MiB were sent (or the client leaves)
Anything else: 404 model_not_found, as the real servers answer.

Recording: `GET /_stub/requests` answers every request seen as a JSON list of {"stub", "path", "model", "body",
"authorization", "headers", "started", "ended", "outcome", "status", "content_chunks"}; outcome is null while the
response runs, then one of complete, client_disconnected, dropped, error (an error event ended the stream),
truncated, rejected (an HTTP error status), bad_request, stopped (the stub is shutting down).
`DELETE /_stub/requests` forgets them. `GET /health` answers 200.

What tests should expect of each normal stream is computed by `expected(model, body)` in this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.server
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from typing import Any

SHAPES = ("openai", "vllm", "ollama", "llamacpp")
PROMPT_TOKENS = {"openai": 11, "vllm": 12, "ollama": 13, "llamacpp": 14, "reasoning": 15}
REASONING = ["Let me", " think", " about", " it."]
TOOL_ARGUMENTS = ['{"city": "', "Zür", 'ich", "unit', '": "celsius"}']
TOOL_CALL_IDS = {
    "openai": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
    "vllm": "chatcmpl-tool-3f9a1c2be4d84b6f",
    "ollama": "call_k3h2j1p0",
    "llamacpp": "Xq8Rz2LmTt0aPq7vWn4bYc1d",
    "reasoning": "chatcmpl-tool-77d1",
}
UPSTREAM_MODEL = {
    "openai": "gpt-4o-mini-2024-07-18",
    "vllm": "Qwen/Qwen2.5-1.5B-Instruct",
    "ollama": "llama3.2:1b",
    "llamacpp": "smollm2",
    "reasoning": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
}
SLOW_FIRST_SECONDS = 1.5
SLOW_INTERVAL = 0.05
SLOW_MAX_CHUNKS = 2000
STALL_SECONDS = 60
PIECE_PAUSE = 0.001
MAX_BODY = 8 << 20
INTERNAL = "http://10.0.0.7:9000"

STOP = threading.Event()


def content_pieces(shape: str) -> list[str]:
    """The reply of a normal stream: an é and an emoji, so multi-byte characters get cut."""
    return ["Hello", " from", f" {shape}", "!", " Café", " 🙂"]


def tool_name(body: dict) -> str | None:
    tools = body.get("tools")
    if not tools:
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        return choice["function"]["name"]
    first = tools[0] if isinstance(tools[0], dict) else {}
    return (first.get("function") or {}).get("name") or "tool"


def expected(model: str, body: dict) -> dict:
    """What a normal stream of `model` (a shape or `reasoning`) carries for this request body: text, reasoning text,
    the tool call (merged), the finish reason and the usage."""
    name = tool_name(body)
    reasoning = REASONING if model == "reasoning" else []
    content = [] if name else content_pieces("vllm" if model == "reasoning" else model)
    tool = None
    tokens = len(reasoning) + len(content)
    if name:
        tool = {
            "id": TOOL_CALL_IDS[model],
            "type": "function",
            "function": {"name": name, "arguments": "".join(TOOL_ARGUMENTS)},
        }
        tokens += 1 + len(TOOL_ARGUMENTS)
    prompt = PROMPT_TOKENS[model]
    return {
        "text": "".join(content),
        "reasoning": "".join(reasoning),
        "tool_call": tool,
        "finish_reason": "tool_calls" if name else "stop",
        "usage": {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens},
    }


# ----- the shapes -----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Shape:
    """Builds the chunks of one server's stream for one request."""

    kind: str  # openai | vllm | ollama | llamacpp
    model: str  # the upstream model name it reports
    include_usage: bool
    logprobs: bool
    top_logprobs: int
    created: int
    rng: random.Random

    def __post_init__(self) -> None:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        if self.kind == "openai":
            self.id = "chatcmpl-" + "".join(self.rng.choice(alphabet) for _ in range(29))
        elif self.kind == "vllm":
            self.id = "chatcmpl-" + "%032x" % self.rng.getrandbits(128)
        elif self.kind == "ollama":
            self.id = f"chatcmpl-{self.rng.randint(1, 999)}"
        else:
            self.id = "chatcmpl-" + "".join(self.rng.choice(alphabet) for _ in range(32))

    # One chunk: `delta` in the shape's envelope.
    def chunk(self, delta: dict, finish: str | None = None, logprobs: dict | None = None) -> dict:
        k = self.kind
        if k == "openai":
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            out = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_560af6e559",
                "choices": [choice],
            }
            if self.include_usage:
                out["usage"] = None
            out["obfuscation"] = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
            return out
        if k == "vllm":
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            if finish is not None:
                choice["stop_reason"] = None
            return {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [choice],
            }
        if k == "ollama":
            choice = {"index": 0, "delta": {"role": "assistant", "content": "", **delta}, "finish_reason": finish}
            if logprobs is not None:
                choice["logprobs"] = logprobs
            return {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_ollama",
                "choices": [choice],
            }
        choice = {"finish_reason": finish, "index": 0, "delta": delta}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return {
            "choices": [choice],
            "created": self.created,
            "id": self.id,
            "model": self.model,
            "system_fingerprint": "b7170-0f7c6961",
            "object": "chat.completion.chunk",
        }

    def role(self) -> dict | None:
        """The opening role chunk, or None for Ollama, which puts the role on every delta instead."""
        if self.kind == "openai":
            return self.chunk({"role": "assistant", "content": "", "refusal": None})
        if self.kind == "vllm":
            return self.chunk({"role": "assistant", "content": ""})
        if self.kind == "llamacpp":
            return self.chunk({"role": "assistant", "content": None})
        return None

    def token_logprobs(self, text: str, n: int) -> dict | None:
        if not self.logprobs:
            return None
        entry = {
            "token": text,
            "logprob": round(-0.125 * (n + 1), 6),
            "bytes": list(text.encode()),
            "top_logprobs": [
                {"token": f"{text}{i}", "logprob": round(-1.5 - i, 6), "bytes": list(f"{text}{i}".encode())}
                for i in range(self.top_logprobs)
            ],
        }
        if self.kind == "llamacpp":
            entry = {"id": 1000 + n, **entry}
        out = {"content": [entry]}
        if self.kind == "openai":
            out["refusal"] = None
        return out

    def content(self, text: str, n: int) -> dict:
        return self.chunk({"content": text}, logprobs=self.token_logprobs(text, n))

    def reasoning(self, text: str) -> dict:
        return self.chunk({"reasoning_content": text})

    def tool_start(self, call_id: str, name: str, with_role: bool) -> dict:
        call = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        if with_role:  # OpenAI opens a tool call in the role chunk itself
            return self.chunk({"role": "assistant", "content": None, "tool_calls": [call], "refusal": None})
        return self.chunk({"tool_calls": [call]})

    def tool_arguments(self, piece: str) -> dict:
        return self.chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})

    def finish(self, reason: str) -> dict:
        delta: dict = {"content": ""} if self.kind == "vllm" else {}
        return self.chunk(delta, finish=reason)

    def usage(self, prompt: int, completion: int) -> dict:
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.kind == "openai":
            usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
            usage["completion_tokens_details"] = {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            }
            return {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_560af6e559",
                "choices": [],
                "usage": usage,
                "obfuscation": "Zx",
            }
        if self.kind == "vllm":
            usage["prompt_tokens_details"] = None
            return {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage,
            }
        if self.kind == "ollama":
            return {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_ollama",
                "choices": [],
                "usage": usage,
            }
        usage["prompt_tokens_details"] = {"cached_tokens": 0}
        return {
            "choices": [],
            "created": self.created,
            "id": self.id,
            "model": self.model,
            "system_fingerprint": "b7170-0f7c6961",
            "object": "chat.completion.chunk",
            "usage": usage,
        }

    @staticmethod
    def timings(prompt: int, completion: int) -> dict:
        return {
            "cache_n": 0,
            "prompt_n": prompt,
            "prompt_ms": 12.5,
            "prompt_per_token_ms": 12.5 / prompt,
            "prompt_per_second": prompt / 0.0125,
            "predicted_n": completion,
            "predicted_ms": 8.0 * completion,
            "predicted_per_token_ms": 8.0,
            "predicted_per_second": 125.0,
        }

    # How an event is framed on the wire.
    @property
    def newline(self) -> bytes:
        return b"\r\n" if self.kind == "ollama" else b"\n"

    def preamble(self) -> bytes:
        """vLLM's stream here comes through a proxy that adds a BOM and a keep-alive comment."""
        return "\ufeff: keep-alive\n\n".encode() if self.kind == "vllm" else b""

    def event(self, payload: dict | str) -> bytes:
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return b"data: " + data.encode() + self.newline * 2


# ----- the wire -------------------------------------------------------------------------------------------------


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

    def __init__(self, handler: "Handler", rng: random.Random):
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


# ----- the server -----------------------------------------------------------------------------------------------


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


class Handler(http.server.BaseHTTPRequestHandler):
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
            models = [*SHAPES, "reasoning"]
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

    # --- the scenarios

    def complete(self, model: str, body: dict, record: dict, rng: random.Random) -> str:
        recorder = self.server.recorder
        failure = FAILURES.get(model)
        if failure is not None:
            status, content_type, text, headers = failure(self, body)
            recorder.update(record, status=status)
            self.reply(status, text.encode(), content_type, headers, chunked=True, rng=rng)
            return "rejected"

        kind = {
            "reasoning": "vllm",
            "slow-first": "openai",
            "slow": "openai",
            "stall": "openai",
            "midstream-error-llamacpp": "llamacpp",
            "midstream-error-vllm": "vllm",
            "truncated-ollama": "ollama",
            "drop": "vllm",
            "drop-reset": "vllm",
            "long-line": "openai",
            "flood": "openai",
        }.get(model, model)
        if kind not in SHAPES:
            recorder.update(record, status=404)
            self.reply(
                404,
                json.dumps(
                    {
                        "error": {
                            "message": f"The model `{model}` does not exist or you do not have access to it.",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": "model_not_found",
                        }
                    }
                ).encode(),
                "application/json",
                chunked=True,
                rng=rng,
            )
            return "rejected"

        stream_options = body.get("stream_options") or {}
        streaming = body.get("stream") is True
        shape = Shape(
            kind,
            UPSTREAM_MODEL["reasoning" if model == "reasoning" else kind],
            include_usage=streaming and stream_options.get("include_usage") is True,
            logprobs=body.get("logprobs") is True,
            top_logprobs=int(body.get("top_logprobs") or 0),
            created=int(time.time()),
            rng=rng,
        )
        if not streaming:
            return self.complete_whole(model, kind, shape, body, record, rng)

        recorder.update(record, status=200)
        self.send_response(200)
        self.send_header(
            "Content-Type", "text/event-stream; charset=utf-8" if kind != "llamacpp" else "text/event-stream"
        )
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        if kind == "openai":
            self.send_header("x-request-id", f"req_{rng.getrandbits(64):016x}")
            self.send_header("openai-processing-ms", "112")
        self.end_headers()
        wire = Wire(self, rng)
        coarse = model in ("slow", "long-line", "flood")
        wire.send(shape.preamble())

        if model == "slow-first":
            wire.pause(SLOW_FIRST_SECONDS)
        role = shape.role()
        name = tool_name(body)
        if role is not None and not (name and kind == "openai"):
            wire.send(shape.event(role), coarse)

        tokens = 0

        def token(chunk: dict, counts_as_content: bool = True) -> None:
            nonlocal tokens
            wire.send(shape.event(chunk), coarse)
            tokens += 1
            if counts_as_content:
                recorder.update(record, content_chunks=record["content_chunks"] + 1)

        def end_normally(reason: str) -> str:
            last = shape.finish(reason)
            usage = shape.usage(PROMPT_TOKENS.get(model, PROMPT_TOKENS[kind]), tokens) if shape.include_usage else None
            if kind == "llamacpp":
                (usage or last)["timings"] = shape.timings(PROMPT_TOKENS[kind], tokens)
            wire.send(shape.event(last), coarse)
            if usage is not None:
                wire.send(shape.event(usage), coarse)
            wire.send(shape.event("[DONE]"), coarse)
            wire.end_after_done()
            return "complete"

        if model in ("long-line", "flood"):
            # A server that never ends a line, or never ends its reply: the reader's bounds are all that stop it.
            for n, text in enumerate(content_pieces(kind)[:2]):
                token(shape.content(text, n))
            if model == "long-line":
                wire.send(b"data: ", coarse=True)
                for _ in range(64):
                    wire.send(b"x" * 65536, coarse=True)
            else:
                for n in range(4096):
                    token(shape.content("y" * 1024, n))
            wire.end()
            return "complete"

        if model in ("midstream-error-llamacpp", "midstream-error-vllm", "truncated-ollama", "drop", "drop-reset"):
            for n, text in enumerate(content_pieces(kind)[:3]):
                token(shape.content(text, n))
            if model == "midstream-error-llamacpp":
                wire.send(shape.event({"error": {"code": 500, "message": "Compute error.", "type": "server_error"}}))
                wire.end()
                return "error"
            if model == "midstream-error-vllm":
                wire.send(
                    shape.event(
                        {
                            "error": {
                                "message": "The engine died unexpectedly (EngineDeadError).",
                                "type": "InternalServerError",
                                "param": None,
                                "code": 500,
                            }
                        }
                    )
                )
                wire.send(shape.event("[DONE]"))
                wire.end()
                return "error"
            if model == "truncated-ollama":
                wire.end()
                return "truncated"
            wire.drop(reset=model == "drop-reset")
            return "dropped"

        if model == "slow":
            for n in range(SLOW_MAX_CHUNKS):
                token(shape.content(f" tok{n}", n))
                wire.pause(SLOW_INTERVAL)
            return end_normally("length")

        if model == "stall":
            for n, text in enumerate(content_pieces(kind)[:2]):
                token(shape.content(text, n))
            wire.pause(STALL_SECONDS)
            return end_normally("stop")

        if model == "reasoning":
            for text in REASONING:
                token(shape.reasoning(text), counts_as_content=False)
        if name:
            token(
                shape.tool_start(
                    TOOL_CALL_IDS[model if model == "reasoning" else kind], name, with_role=kind == "openai"
                ),
                counts_as_content=False,
            )
            for piece in TOOL_ARGUMENTS:
                token(shape.tool_arguments(piece), counts_as_content=False)
            return end_normally("tool_calls")
        for n, text in enumerate(content_pieces(kind)):
            token(shape.content(text, n))
        return end_normally("stop")

    def complete_whole(self, model: str, kind: str, shape: Shape, body: dict, record: dict, rng: random.Random) -> str:
        """A non-streaming request (Handoff never sends one; a person with curl might)."""
        if model not in (*SHAPES, "reasoning"):
            self.server.recorder.update(record, status=400)
            self.reply(
                400,
                json.dumps(
                    {
                        "error": {
                            "message": f"{model} only streams",
                            "type": "invalid_request_error",
                            "param": "stream",
                            "code": None,
                        }
                    }
                ).encode(),
                "application/json",
                chunked=True,
                rng=rng,
            )
            return "rejected"
        want = expected(model, body)
        message: dict[str, Any] = {"role": "assistant", "content": want["text"] or None}
        if want["reasoning"]:
            message["reasoning_content"] = want["reasoning"]
        if want["tool_call"]:
            message["tool_calls"] = [want["tool_call"]]
        usage = want["usage"]
        document = {
            "id": shape.id,
            "object": "chat.completion",
            "created": shape.created,
            "model": shape.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": want["finish_reason"]}],
            "usage": usage,
        }
        self.server.recorder.update(record, status=200, content_chunks=len(content_pieces(kind)))
        self.reply(200, json.dumps(document, ensure_ascii=False).encode(), "application/json", chunked=True, rng=rng)
        return "complete"


def _failure_401(handler: Handler, body: dict):
    key = (handler.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
    return (
        401,
        "application/json",
        json.dumps(
            {
                "error": {
                    "message": f"Incorrect API key provided: {key}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
        ),
        {},
    )


# model -> (handler, body) -> (status, content type, body text, extra headers)
FAILURES = {
    "fail-503": lambda h, b: (
        503,
        "text/plain",
        "upstream connect error or disconnect/reset before headers. reset "
        "reason: connection failure, transport failure reason: delayed connect error: 111 "
        f"{INTERNAL}",
        {"server": "envoy"},
    ),
    "fail-502": lambda h, b: (
        502,
        "text/html",
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3 "
        f"({INTERNAL}/v1/chat/completions)</center>\r\n</body>\r\n</html>\r\n",
        {"server": "nginx/1.25.3"},
    ),
    "fail-500-json": lambda h, b: (
        500,
        "application/json; charset=utf-8",
        json.dumps(
            {
                "error": {
                    "code": 500,
                    "message": f"failed to reach the model runner at {INTERNAL}/completion",
                    "type": "server_error",
                }
            }
        ),
        {},
    ),
    "fail-429": lambda h, b: (
        429,
        "application/json",
        json.dumps(
            {
                "error": {
                    "message": "Rate limit reached for gpt-4o-mini in organization org-stub on tokens per min (TPM): Limit 200000, "
                    "Used 199800, Requested 500. Please try again in 1s. Visit "
                    "https://platform.openai.com/account/rate-limits to learn more.",
                    "type": "tokens",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            }
        ),
        {"Retry-After": "1", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1s"},
    ),
    "fail-401": _failure_401,
    "fail-404": lambda h, b: (
        404,
        "application/json",
        json.dumps(
            {
                "error": {
                    "message": "The model `gpt-9` does not exist or you do not have access to it.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            }
        ),
        {},
    ),
    "context-400": lambda h, b: (
        400,
        "application/json; charset=utf-8",
        json.dumps(
            {
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 4100,
                    "n_ctx": 2048,
                }
            }
        ),
        {},
    ),
    "vllm-context-400": lambda h, b: (
        400,
        "application/json",
        json.dumps(
            {
                "error": {
                    "message": "This model's maximum context length is 2048 tokens. However, your request has 4100 input tokens. "
                    "Please reduce the length of the input messages.",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            }
        ),
        {},
    ),
    "openai-context-400": lambda h, b: (
        400,
        "application/json",
        json.dumps(
            {
                "error": {
                    "message": "This model's maximum context length is 2048 tokens. However, your messages resulted in 4100 "
                    "tokens. Please reduce the length of the messages.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            }
        ),
        {},
    ),
    "old-vllm-400": lambda h, b: (
        400,
        "application/json",
        json.dumps(
            {
                "object": "error",
                "message": "top_k must be -1 (disable), or at least 1, got 0.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        ),
        {},
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="stub")
    parser.add_argument("--seed", type=int, default=None, help="makes the random cuts repeatable")
    parser.add_argument(
        "--max-seconds", type=float, default=3 * 3600, help="exit on its own after this long (default: 3 hours)"
    )
    args = parser.parse_args(argv)

    server = Server(("127.0.0.1", args.port), Handler)
    server.recorder = Recorder(args.name)
    server.seed = args.seed
    parent = os.getppid()

    def stop(signum, frame) -> None:
        STOP.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    serving.start()
    print(f"stub {args.name} listening on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.max_seconds
    while not STOP.wait(0.25):
        if time.monotonic() > deadline:
            print(f"stub {args.name}: --max-seconds reached", file=sys.stderr, flush=True)
            break
        if os.getppid() != parent:  # whoever started us is gone
            print(f"stub {args.name}: parent exited", file=sys.stderr, flush=True)
            break
    STOP.set()
    server.shutdown()
    server.server_close()
    print(f"stub {args.name} stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
