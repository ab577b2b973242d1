"""What the stub upstream (upstream_stub.py) answers a POST to /chat/completions, by the request's `model`: a failure
of stub_failures.py, a 404 for an unknown model, a whole completion to a non-streaming request, or a stream in one of
stub_shapes.py's shapes, normal, slow, stalled, broken mid-way, dropped, or past a reader's bounds; or, for the models
that fail and continue answers, stub_continuation.py's reply."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import stub_continuation
from stub_failures import FAILURES
from stub_shapes import (
    PROMPT_TOKENS,
    REASONING,
    SHAPES,
    TOOL_ARGUMENTS,
    TOOL_CALL_IDS,
    UPSTREAM_MODEL,
    Shape,
    content_pieces,
    expected,
    tool_name,
)
from stub_wire import Wire

SLOW_FIRST_SECONDS = 1.5
SLOW_INTERVAL = 0.05
SLOW_MAX_CHUNKS = 2000
STALL_SECONDS = 60


class Scenarios:
    """The replies of /chat/completions, mixed into stub_server.Handler: they write with its reply() and the
    BaseHTTPRequestHandler methods, and record on its server's Recorder. Each returns the request's outcome."""

    def complete(self, model: str, body: dict, record: dict, rng: random.Random) -> str:
        recorder = self.server.recorder
        if model in stub_continuation.MODELS:
            return stub_continuation.answer(self, model, body, record, rng)
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
