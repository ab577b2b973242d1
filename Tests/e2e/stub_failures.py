"""The failures the stub upstream (upstream_stub.py) answers before any chunk, by model: the status, content type,
body and headers of real servers' errors (Envoy's and nginx's pages, llama.cpp's, vLLM's and OpenAI's JSON errors,
rate limits, a refused key, context-length errors), some naming an internal address that must never reach a client."""

from __future__ import annotations

import http.server
import json

INTERNAL = "http://10.0.0.7:9000"


def _failure_401(handler: http.server.BaseHTTPRequestHandler, body: dict):
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
