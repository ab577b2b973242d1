"""The stub upstream's (upstream_stub.py) models that fail mid-answer and continue an answer from its text so far,
for Handoff's continuation (a failed answer sent again with a trailing assistant message):

  continued        llama.cpp shape (`"continuation": "prefill"`). A fresh request (its last message not the
                   assistant's) gets the first 3 pieces of ANSWER (CUTS), its count so far in a usage-only chunk,
                   then half an event that ends inside a multi-byte character, and the connection closed. A request
                   whose last message is {"role": "assistant", "content": P}, P a prefix of the answer, gets the
                   rest of it (from mid-piece when P ends there; `max_tokens` honoured), then the finish chunk, the
                   usage and [DONE]. Any other P: 400.
  continued-vllm   the same in vLLM's shape (`"continuation": "continue_final_message"`): a continuation must also say
                   `continue_final_message: true` and `add_generation_prompt: false`, as vLLM wants, else 400.
  continued-flaky  llama.cpp shape: every reply, a continuation too, is cut the same way after 2 pieces (of the rest).
  continued-tools  llama.cpp shape: a tool call's deltas, then the connection closed (nothing to continue as text).

Every reply records on its request's record `usage` (what the stub reported, when it did) and `cut_at` (the time the
connection was closed, when it was). Prompt tokens are PROMPT_TOKENS plus one per character of the prefill, so a
continuation's prompt counts the text it continues; completion tokens are the chunks of this reply."""

from __future__ import annotations

import json
import random
import time

from stub_shapes import TOOL_ARGUMENTS, TOOL_CALL_IDS, UPSTREAM_MODEL, Shape, tool_name
from stub_wire import Wire

# Multi-byte characters throughout, and in the pieces right after the cut: the 4-byte unicorn comes first.
ANSWER = ["Ça", " marche", " déjà", " 🦄", " über", " Crème", " brûlée", " für", " naïve", " Zürich", "!"]
PROMPT_TOKENS = 17
KINDS = {
    "continued": "llamacpp",
    "continued-vllm": "vllm",
    "continued-flaky": "llamacpp",
    "continued-tools": "llamacpp",
}
CUTS = {"continued": 3, "continued-vllm": 3, "continued-flaky": 2}  # the pieces a reply streams before it is cut
MODELS = tuple(KINDS)


def rest_of(prefill: str) -> list[str] | None:
    """The pieces of ANSWER after `prefill` (the first one cut where the prefill ends), or None when the prefill is
    not a prefix of it."""
    if not "".join(ANSWER).startswith(prefill):
        return None
    rest, offset = [], 0
    for piece in ANSWER:
        if offset + len(piece) > len(prefill):
            rest.append(piece[max(0, len(prefill) - offset) :])
        offset += len(piece)
    return rest


def prefill_of(body: dict) -> str | None:
    """The trailing assistant message's text, when the request continues an answer."""
    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    return last.get("content") if last.get("role") == "assistant" else None


def refusal(model: str, body: dict, prefill: str | None) -> str | None:
    """Why the stub refuses the request, as the real server would (or a test must see it fail)."""
    if body.get("stream") is not True:
        return f"{model} only streams"
    if prefill is None:
        if body.get("continue_final_message"):
            return "continue_final_message is set, but the last message is not the assistant's"
        return None
    if not isinstance(prefill, str) or rest_of(prefill) is None:
        return f"the assistant message is not a prefix of the answer: {prefill!r}"
    if model == "continued-vllm" and (
        body.get("continue_final_message") is not True or body.get("add_generation_prompt") is not False
    ):
        return "a continued final message needs continue_final_message: true and add_generation_prompt: false"
    if model == "continued-tools":
        return "a tool call is never continued"
    return None


def answer(handler, model: str, body: dict, record: dict, rng: random.Random) -> str:
    """The reply of one of MODELS; returns the request's outcome. `handler` is the stub_server.Handler."""
    recorder = handler.server.recorder
    prefill = prefill_of(body)
    problem = refusal(model, body, prefill)
    if problem is not None:
        recorder.update(record, status=400)
        error = {"error": {"message": problem, "type": "invalid_request_error", "param": None, "code": 400}}
        handler.reply(400, json.dumps(error).encode(), "application/json", chunked=True, rng=rng)
        return "rejected"

    kind = KINDS[model]
    shape = Shape(
        kind,
        UPSTREAM_MODEL[kind],
        include_usage=(body.get("stream_options") or {}).get("include_usage") is True,
        logprobs=body.get("logprobs") is True,
        top_logprobs=int(body.get("top_logprobs") or 0),
        created=int(time.time()),
        rng=rng,
    )
    recorder.update(record, status=200)
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    wire = Wire(handler, rng)
    wire.send(shape.preamble())
    wire.send(shape.event(shape.role()))
    prompt = PROMPT_TOKENS + len(prefill or "")

    if model == "continued-tools":
        wire.send(shape.event(shape.tool_start(TOOL_CALL_IDS[kind], tool_name(body) or "get_weather", False)))
        for piece in TOOL_ARGUMENTS[:2]:
            wire.send(shape.event(shape.tool_arguments(piece)))
        return cut(wire, recorder, record)

    rest = rest_of(prefill or "") or []
    if prefill is None or model == "continued-flaky":
        sent = rest[: CUTS[model]]
        for n, text in enumerate(sent):
            wire.send(shape.event(shape.content(text, n)))
            recorder.update(record, content_chunks=n + 1)
        if shape.include_usage:  # as Handoff always asks: the count so far, so both attempts' counts are the stub's
            usage = shape.usage(prompt, len(sent))
            recorder.update(record, usage=usage["usage"])
            wire.send(shape.event(usage))
        if len(sent) < len(rest):
            # The next event, cut inside the first multi-byte character it has: never to be relayed.
            partial = shape.event(shape.content(rest[len(sent)], len(sent)))
            wire.send(partial[: next((i + 1 for i, byte in enumerate(partial) if byte >= 0xC0), len(partial) // 2)])
        return cut(wire, recorder, record)

    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    reason = "stop"
    if isinstance(limit, int) and limit < len(rest):
        rest, reason = rest[:limit], "length"
    for n, text in enumerate(rest):
        wire.send(shape.event(shape.content(text, n)))
        recorder.update(record, content_chunks=n + 1)
    last = shape.finish(reason)
    usage = shape.usage(prompt, len(rest))
    recorder.update(record, usage=usage["usage"])
    if kind == "llamacpp":
        last["timings"] = shape.timings(prompt, len(rest))
    wire.send(shape.event(last))
    if shape.include_usage:
        wire.send(shape.event(usage))
    wire.send(shape.event("[DONE]"))
    wire.end_after_done()
    return "complete"


def cut(wire: Wire, recorder, record: dict) -> str:
    """Closes the connection mid-body (a FIN), noting when. First a pause, so the events before the cut have been read
    when it comes: a FIN that arrives with them can end the worker's read before it relays them (CI: a tool call's last
    argument chunk went missing), and these tests compare the text up to the cut exactly."""
    wire.pause(0.2)
    recorder.update(record, cut_at=time.time())
    wire.drop(reset=False)
    return "dropped"
