"""The model catalogue of the session's stack (conftest.py writes it to a file for HANDOFF_MODELS_FILE): `demo`, the
real model `local` on llama-server, `local-continued` on a pair of llama-servers of its own (test_real_continuation.py
starts them), one model per scenario of the stub upstreams (upstream_stub.py), and the multi-endpoint, keyed,
timed-out, capped and continued models in front of them. Also the addresses the upstreams listen on and llama-server's
arguments and chat template, which upstreams_e2e.py starts them with."""

from __future__ import annotations

STUB_PORTS = {"A": 18090, "B": 18091}
LLAMA_PORT = 18092
REFUSED_PORT = 18093  # nothing listens here: a connection is refused
# test_real_continuation.py's own two llama-servers (A, B) of the same model, and the recording proxies the worker
# reaches them through (`local-continued`): started by that module, not by the session.
PAIR_LLAMA_PORTS = {"A": 18095, "B": 18096}
PAIR_PROXY_PORTS = {"A": 18097, "B": 18098}
STUB_API_KEY = "sk-stub-secret"
CONTINUED_BACKOFF_MS = 300  # stub-continued-one's backoff: its continuation waits it out
# --kv-unified: each of the two slots gets the whole 2048-token window (without it, 1024 each, and the context error
# names 1024). The chat template: SmolLM2's own ignores `tools` altogether (llama-server reports supports_tools:
# false and generates plain text); this one is SmolLM2's ChatML with Qwen-style <tool_call> tools, from which
# llama-server derives a tool-call grammar and parser.
LLAMA_ARGS = "--jinja --chat-template-file {template}"
TOOLS_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful AI assistant named SmolLM, trained by Hugging Face' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


def stub_url(name: str, prefix: str = "") -> str:
    """A stub's base URL; `prefix` makes a distinct endpoint on the same stub (the stub serves any path ending in
    /chat/completions), so one catalogue entry's backoff never touches another's."""
    return f"http://127.0.0.1:{STUB_PORTS[name]}{prefix}/v1"


def upstream(base_url: str, model: str, **options) -> dict:
    return {"base_url": base_url, "model": model, **options}


# Catalogue models of the stubs, by scenario: public name -> upstream model on stub A. Single-endpoint models get a
# 1 ms backoff, so that asking the same model twice in a row meets the same failure twice.
STUB_SCENARIOS = {
    "stub-openai": "openai",
    "stub-vllm": "vllm",
    "stub-ollama": "ollama",
    "stub-llamacpp": "llamacpp",
    "stub-reasoning": "reasoning",
    "stub-slow-first": "slow-first",
    "stub-slow": "slow",
    "stub-midstream-error-llamacpp": "midstream-error-llamacpp",
    "stub-midstream-error-vllm": "midstream-error-vllm",
    "stub-truncated-ollama": "truncated-ollama",
    "stub-drop": "drop",
    "stub-drop-reset": "drop-reset",
    "stub-fail-503": "fail-503",
    "stub-fail-502": "fail-502",
    "stub-fail-500-json": "fail-500-json",
    "stub-fail-429": "fail-429",
    "stub-fail-404": "fail-404",
    "stub-context-400": "context-400",
    "stub-vllm-context-400": "vllm-context-400",
    "stub-openai-context-400": "openai-context-400",
    "stub-old-vllm-400": "old-vllm-400",
}


def catalogue() -> dict:
    """`demo` first, the real model, one model per stub scenario, and the multi-endpoint and keyed ones."""
    models: list[dict] = [
        {"name": "demo", "backend": "demo"},
        {
            "name": "local",
            "backend": "openai",
            "upstreams": [
                upstream(
                    f"http://127.0.0.1:{LLAMA_PORT}/v1",
                    "smollm2",
                    max_concurrent_requests=2,
                    connect_timeout_ms=2000,
                    first_token_timeout_ms=60000,
                    between_tokens_timeout_ms=30000,
                )
            ],
        },
        # A real model on two servers that continue answers (test_real_continuation.py): A first, B continues
        {
            "name": "local-continued",
            "backend": "openai",
            "upstreams": [
                upstream(
                    f"http://127.0.0.1:{PAIR_PROXY_PORTS[server]}/v1",
                    "smollm2",
                    continuation="prefill",
                    max_concurrent_requests=2,
                    connect_timeout_ms=2000,
                    first_token_timeout_ms=60000,
                    between_tokens_timeout_ms=30000,
                )
                for server in ("A", "B")
            ],
        },
    ]
    for name, model in STUB_SCENARIOS.items():
        models.append(
            {"name": name, "backend": "openai", "upstreams": [upstream(stub_url("A", f"/{name}"), model, backoff_ms=1)]}
        )
    models += [
        # Hostile upstreams and caps (test_hostile.py): a line and a reply past their bounds; a model's own reply cap.
        {
            "name": "stub-long-line",
            "backend": "openai",
            "upstreams": [upstream(stub_url("A", "/long-line"), "long-line", max_line_bytes=65536, backoff_ms=1)],
        },
        {
            "name": "stub-flood",
            "backend": "openai",
            "upstreams": [upstream(stub_url("A", "/flood"), "flood", max_reply_bytes=262144, backoff_ms=1)],
        },
        {
            "name": "stub-capped",
            "backend": "openai",
            "max_tokens": 7,
            "upstreams": [upstream(stub_url("A", "/capped"), "openai", backoff_ms=1)],
        },
        # Timeouts
        {
            "name": "stub-first-token-timeout",
            "backend": "openai",
            "upstreams": [upstream(stub_url("A", "/ftt"), "slow-first", first_token_timeout_ms=500, backoff_ms=1)],
        },
        {
            "name": "stub-stall",
            "backend": "openai",
            "upstreams": [upstream(stub_url("A", "/stall"), "stall", between_tokens_timeout_ms=1000, backoff_ms=1)],
        },
        {
            "name": "stub-refused",
            "backend": "openai",
            "upstreams": [
                upstream(f"http://127.0.0.1:{REFUSED_PORT}/v1", "openai", connect_timeout_ms=1000, backoff_ms=1)
            ],
        },
        # Keys: STUB_API_KEY is in the worker's environment, STUB_UNSET_KEY is not
        {
            "name": "stub-keyed",
            "backend": "openai",
            "upstreams": [upstream(stub_url("A", "/keyed"), "openai", api_key_env="STUB_API_KEY", backoff_ms=1)],
        },
        {
            "name": "stub-keyed-401",
            "backend": "openai",
            "upstreams": [upstream(stub_url("A", "/keyed-401"), "fail-401", api_key_env="STUB_API_KEY", backoff_ms=1)],
        },
        {
            "name": "stub-unset-key",
            "backend": "openai",
            "upstreams": [upstream(stub_url("A", "/unset-key"), "openai", api_key_env="STUB_UNSET_KEY", backoff_ms=1)],
        },
        # Several endpoints: A fails before its first chunk in some way, B answers
        {
            "name": "failover",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/failover"), "fail-503", backoff_ms=5000),
                upstream(stub_url("B", "/failover"), "openai", backoff_ms=5000),
            ],
        },
        {
            "name": "failover-429",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/failover-429"), "fail-429", backoff_ms=5000),
                upstream(stub_url("B", "/failover-429"), "vllm", backoff_ms=5000),
            ],
        },
        {
            "name": "failover-refused",
            "backend": "openai",
            "upstreams": [
                upstream(
                    f"http://127.0.0.1:{REFUSED_PORT}/failover/v1", "openai", connect_timeout_ms=1000, backoff_ms=5000
                ),
                upstream(stub_url("B", "/failover-refused"), "llamacpp", backoff_ms=5000),
            ],
        },
        {
            "name": "failover-timeout",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/failover-timeout"), "slow-first", first_token_timeout_ms=500, backoff_ms=5000),
                upstream(stub_url("B", "/failover-timeout"), "ollama", backoff_ms=5000),
            ],
        },
        # Only the metrics test uses these two, so it can expect exact counts of them.
        {"name": "demo-metered", "backend": "demo"},
        {
            "name": "failover-metered",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/failover-metered"), "fail-503", backoff_ms=1),
                upstream(stub_url("B", "/failover-metered"), "openai", backoff_ms=1),
            ],
        },
        {
            "name": "failover-all-503",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/all-503"), "fail-503", backoff_ms=1),
                upstream(stub_url("B", "/all-503"), "fail-502", backoff_ms=1),
            ],
        },
        {
            "name": "failover-all-429",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/all-429"), "fail-429", backoff_ms=1),
                upstream(stub_url("B", "/all-429"), "fail-429", backoff_ms=1),
            ],
        },
        # A failure after the first chunk is never failed over
        {
            "name": "failover-midstream",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/failover-midstream"), "midstream-error-vllm", backoff_ms=1),
                upstream(stub_url("B", "/failover-midstream"), "openai", backoff_ms=1),
            ],
        },
        # Continuation (test_continuation.py): an answer cut mid-stream, sent again with its text so far as a trailing
        # assistant message, to the other endpoint first (stub_continuation.py's models)
        {
            "name": "stub-continued",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/continued"), "continued", continuation="prefill", backoff_ms=2000),
                upstream(stub_url("B", "/continued"), "continued", continuation="prefill", backoff_ms=2000),
            ],
        },
        {
            "name": "stub-continued-vllm",
            "backend": "openai",
            "upstreams": [
                upstream(
                    stub_url("A", "/continued-vllm"),
                    "continued-vllm",
                    continuation="continue_final_message",
                    backoff_ms=2000,
                ),
                upstream(
                    stub_url("B", "/continued-vllm"),
                    "continued-vllm",
                    continuation="continue_final_message",
                    backoff_ms=2000,
                ),
            ],
        },
        # One endpoint: the continuation goes to it again once its backoff has passed
        {
            "name": "stub-continued-one",
            "backend": "openai",
            "upstreams": [
                upstream(
                    stub_url("A", "/continued-one"),
                    "continued",
                    continuation="prefill",
                    backoff_ms=CONTINUED_BACKOFF_MS,
                )
            ],
        },
        # Every reply is cut: continued HANDOFF_MAX_CONTINUATIONS (2) times, then ended with an error event
        {
            "name": "stub-continued-flaky",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/continued-flaky"), "continued-flaky", continuation="prefill", backoff_ms=1),
                upstream(stub_url("B", "/continued-flaky"), "continued-flaky", continuation="prefill", backoff_ms=1),
            ],
        },
        # What cannot be continued: a tool call (and, asked for, logprobs)
        {
            "name": "stub-continued-tools",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/continued-tools"), "continued-tools", continuation="prefill", backoff_ms=1)
            ],
        },
        # Least busy first
        {
            "name": "stub-pair",
            "backend": "openai",
            "upstreams": [
                upstream(stub_url("A", "/pair"), "slow", max_concurrent_requests=4, backoff_ms=1),
                upstream(stub_url("B", "/pair"), "slow", max_concurrent_requests=4, backoff_ms=1),
            ],
        },
    ]
    return {"models": models}
