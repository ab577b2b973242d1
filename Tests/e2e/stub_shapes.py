"""The recorded stream shapes of the stub upstream (upstream_stub.py): how OpenAI, vLLM, Ollama's /v1 and llama.cpp's
llama-server frame the chunks of a chat completion stream (ids, envelopes, role and finish chunks, tool calls,
logprobs, usage, line endings), and what a normal stream of each carries, which the tests expect: `expected(model,
body)`. No I/O."""

from __future__ import annotations

import dataclasses
import json
import random
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
