"""Starts the whole system once per session: a fresh database, the API server, a worker, two SSE replicas and
Caddy in front, on ports of their own (18080-18083), so a running `make run` (8080-8083) is untouched.

Before it, the upstreams the model catalogue points at: two stub OpenAI-compatible servers (upstream_stub.py, A on
18090 and B on 18091) and, when a collected test asks for it, the real llama.cpp `llama-server` with SmolLM2-135M on
18092 (its /health is awaited only by the tests that use it). Their logs go beside the system's, so a failing run
shows them in the terminal summary.

The API-key tests (test_keys.py, test_limits.py, test_charges.py) share `keyed`: two more API servers with keys
required (18084 and 18085) on the session's database, so the session's worker and SSE replicas serve them, behind a
Caddy of their own (18086). The session's API stays keyless (HANDOFF_AUTH=off), so every other test file runs
unchanged."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from handoff_e2e import API_PORT, CADDY_PORT, POOL_SIZE, SSE_PORTS, TOKEN_DELAY_MS  # noqa: E402
from handoff_stack import ROOT, Ports, Stack, healthy, status, wait_until  # noqa: E402
from keys_e2e import API_PORTS as KEYED_API_PORTS  # noqa: E402
from keys_e2e import CADDY as KEYED_CADDY
from keys_e2e import MAX_MESSAGES, MAX_PROMPT_CHARS, Key, KeysCLI, keyed_one_token, unique  # noqa: E402

START_TIMEOUT = 60
CLUSTER = pytest.StashKey["Stack"]()
LOG_DIR = pytest.StashKey[Path]()

STUB_PORTS = {"A": 18090, "B": 18091}
LLAMA_PORT = 18092
REFUSED_PORT = 18093  # nothing listens here: a connection is refused
STUB_API_KEY = "sk-stub-secret"
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
LLAMA_HEALTH_TIMEOUT = 120
LLAMA_BUILD_TIMEOUT = 1500  # scripts/llama-server.sh builds the binary on first use (about 10 minutes on 2 cores)
PROCESS_STOP_TIMEOUT = 10


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


class Upstreams:
    """The upstream processes of the session: the two stubs and, when wanted, llama-server."""

    api_key = STUB_API_KEY  # in the worker's environment as STUB_API_KEY

    def __init__(self, log_dir: Path, catalogue_file: Path):
        self.log_dir = log_dir
        self.catalogue_file = catalogue_file
        self.processes: dict[str, subprocess.Popen] = {}
        self.llama_started_at: float | None = None
        self.llama_binary_was_built = True

    def requests(self, stub: str) -> list[dict]:
        """What stub `stub` (A or B) recorded: one entry per request it received."""
        connection = http.client.HTTPConnection("127.0.0.1", STUB_PORTS[stub], timeout=10)
        try:
            connection.request("GET", "/_stub/requests")
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def records(self, marker: str) -> list[dict]:
        """The requests, on either stub, whose body contains `marker` (tests put one in the prompt), oldest first."""
        found = [r for stub in STUB_PORTS for r in self.requests(stub) if marker in json.dumps(r.get("body"))]
        return sorted(found, key=lambda r: r["started"])

    def wait_records(self, marker: str, ready, timeout: float = 10) -> list[dict]:
        """Polls records(marker) until `ready(records)` is true; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.records(marker)
            if ready(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"the stubs' records for {marker} never got ready: {found}")
            time.sleep(0.05)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            # A session of its own, so a stop reaches the process and whatever it started (the llama build).
            self.processes[name] = subprocess.Popen(
                argv,
                env={**os.environ, **(env or {})},
                cwd=self.log_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def start_stubs(self) -> None:
        for name, port in STUB_PORTS.items():
            self.start(
                f"stub-{name}",
                [
                    sys.executable,
                    "-u",
                    str(Path(__file__).with_name("upstream_stub.py")),
                    "--port",
                    str(port),
                    "--name",
                    name,
                ],
            )
        deadline = time.monotonic() + 15
        for name, port in STUB_PORTS.items():
            self.wait(f"stub-{name}", lambda port=port: status(port, "/health") == 200, deadline)

    def start_llama(self) -> None:
        binary = subprocess.run(
            [str(ROOT / "scripts" / "llama-server.sh"), "paths"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split()[0]
        self.llama_binary_was_built = os.access(binary, os.X_OK)
        template = self.log_dir / "smollm2-tools.jinja"
        template.write_text(TOOLS_TEMPLATE)
        self.start(
            "llama-server",
            [str(ROOT / "scripts" / "llama-server.sh"), "run", str(LLAMA_PORT)],
            {"HANDOFF_LLAMA_ARGS": LLAMA_ARGS.format(template=template)},
        )
        self.llama_started_at = time.monotonic()

    def wait_llama(self) -> str:
        """Until llama-server's /health answers 200; returns its base URL (without /v1)."""
        if self.llama_started_at is None:
            self.start_llama()
        budget = LLAMA_HEALTH_TIMEOUT if self.llama_binary_was_built else LLAMA_BUILD_TIMEOUT
        # Started with the session, it may have been up for long when the first test asks: probe at least once more.
        deadline = max(self.llama_started_at + budget, time.monotonic() + 10)
        self.wait("llama-server", lambda: status(LLAMA_PORT, "/health") == 200, deadline)
        return f"http://127.0.0.1:{LLAMA_PORT}"

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"upstreams exited early (name: exit status): {dead}; logs in {self.log_dir}")

    def wait(self, name: str, probe, deadline: float) -> None:
        wait_until(name, self, deadline, probe)

    def stop(self) -> None:
        """SIGTERM to each process group, SIGKILL to whatever is left after PROCESS_STOP_TIMEOUT seconds."""
        for process in self.processes.values():
            if process.poll() is None:
                signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + PROCESS_STOP_TIMEOUT
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} ignored SIGTERM for {PROCESS_STOP_TIMEOUT} s: SIGKILL")
                signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
        self.processes.clear()


def signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the group that start_new_session made: its id is the process's
    except (ProcessLookupError, PermissionError):
        pass


def wants_llama(session: pytest.Session) -> bool:
    return any("llama_server" in getattr(item, "fixturenames", ()) for item in session.items)


@pytest.fixture(scope="session")
def log_dir(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("handoff-logs")
    request.config.stash[LOG_DIR] = path
    return path


@pytest.fixture(scope="session")
def upstreams(request, log_dir, tmp_path_factory) -> Upstreams:
    """The stubs, started and healthy, and llama-server started (not awaited) when a collected test needs it."""
    catalogue_file = tmp_path_factory.mktemp("catalogue") / "models.json"
    catalogue_file.write_text(json.dumps(catalogue(), indent=2))
    processes = Upstreams(log_dir, catalogue_file)
    try:
        try:
            processes.start_stubs()
            if wants_llama(request.session):
                processes.start_llama()
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            raise pytest.fail.Exception(f"the upstreams did not start: {error}", pytrace=False) from None
        yield processes
    finally:
        processes.stop()


@pytest.fixture(scope="session")
def llama_server(upstreams) -> str:
    """The base URL of the real llama-server (http://127.0.0.1:18092), once its /health answers 200."""
    try:
        return upstreams.wait_llama()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        raise pytest.fail.Exception(f"llama-server did not start: {error}", pytrace=False) from None


@pytest.fixture(scope="session")
def task_usage(cluster):
    """task_usage(completion or task id) -> the usage recorded on the task row, once the task has ended."""

    def usage_of(task: str, timeout: float = 10) -> dict:
        task_id = str(uuid.UUID(hex=task.removeprefix("chatcmpl-"))) if task.startswith("chatcmpl-") else task
        deadline = time.monotonic() + timeout
        while (status := cluster.sql(f"SELECT status FROM handoff_tasks WHERE id = '{task_id}'")) in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, f"task {task_id} still {status} after {timeout} s"
            time.sleep(0.05)
        usage = cluster.sql(f"SELECT usage FROM handoff_tasks WHERE id = '{task_id}'")
        assert usage, f"task {task_id} ended ({status!r}) with no usage recorded"
        return json.loads(usage)

    return usage_of


def start_cluster(cluster: Stack, catalogue_file: Path) -> None:
    cluster.start_services(
        settings={"HANDOFF_DB_POOL_SIZE": str(POOL_SIZE), "HANDOFF_MODELS_FILE": str(catalogue_file)},
        worker_settings={"HANDOFF_DEMO_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS), "STUB_API_KEY": STUB_API_KEY},
    )
    deadline = time.monotonic() + START_TIMEOUT
    cluster.wait_healthy(deadline)
    cluster.wait_routed(deadline)


@pytest.fixture(scope="session")
def cluster(request, log_dir, upstreams) -> Stack:
    admin_url = os.environ.get("HANDOFF_TEST_DATABASE_URL")
    if not admin_url:
        pytest.fail(
            "HANDOFF_TEST_DATABASE_URL is not set: run `make test` (scripts/test.sh), or start a cluster with "
            "`HANDOFF_PG_PORT=25439 scripts/postgres.sh start` and export "
            "HANDOFF_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:25439/postgres",
            pytrace=False,
        )
    cluster = Stack(
        admin_url,
        Ports(caddy=CADDY_PORT, api=API_PORT, sse=SSE_PORTS),
        log_dir=log_dir,
        bin_dir=Path(os.environ.get("HANDOFF_BIN_DIR", ROOT / ".build" / "debug")).resolve(),
        prefix="handoff_e2e",
    )
    cluster.create_database()
    request.config.stash[CLUSTER] = cluster
    try:
        try:
            start_cluster(cluster, upstreams.catalogue_file)
        except (RuntimeError, OSError) as error:  # the process logs follow in the terminal summary
            raise pytest.fail.Exception(f"the system did not start: {error}", pytrace=False) from None
        yield cluster
    finally:
        cluster.stop()
        cluster.drop_database()


@dataclasses.dataclass
class Keyed:
    cli: KeysCLI
    cluster: Stack

    def key(self, label: str, **options) -> Key:
        return self.cli.create(unique(label), **options)


def stop_processes(stack: Stack, names: list[str]) -> None:
    """SIGTERM, then SIGKILL after 10 s, to processes a fixture added to `stack`; forgets them."""
    for name in names:
        process = stack.processes.get(name)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name in names:
        process = stack.processes.pop(name, None)
        stack.commands.pop(name, None)
        if process is None:
            continue
        try:
            process.wait(timeout=PROCESS_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def keyed(cluster) -> Keyed:
    """Two keyed API servers on the session's database (same secret and settings, HANDOFF_AUTH=required, small input
    limits) and a Caddy that balances over both, in front of the session's SSE replicas. Session-scoped: started by
    the first test that asks, stopped (and removed from cluster.processes and cluster.commands) before the cluster."""
    cli = KeysCLI(cluster.bin_dir / "handoff-api", cluster.database_url)
    argv, settings = cluster.commands["api"]
    started: list[str] = []
    try:
        try:
            for port in KEYED_API_PORTS:
                name = f"api-keyed-{port}"
                cluster.start(
                    name,
                    argv,
                    {
                        **settings,
                        "HANDOFF_AUTH": "required",
                        "HANDOFF_API_PORT": str(port),
                        "HANDOFF_MAX_MESSAGES": str(MAX_MESSAGES),
                        "HANDOFF_MAX_PROMPT_CHARS": str(MAX_PROMPT_CHARS),
                    },
                )
                started.append(name)
            caddy_argv, caddy_settings = cluster.commands["caddy"]
            cluster.start(
                "caddy-keyed",
                caddy_argv,
                {
                    **caddy_settings,
                    "HANDOFF_CADDY_PORT": str(KEYED_CADDY),
                    "HANDOFF_API_UPSTREAM": " ".join(f"127.0.0.1:{port}" for port in KEYED_API_PORTS),
                    "XDG_DATA_HOME": str(cluster.log_dir / "xdg-data-keyed"),
                    "XDG_CONFIG_HOME": str(cluster.log_dir / "xdg-config-keyed"),
                },
            )
            started.append("caddy-keyed")
            deadline = time.monotonic() + START_TIMEOUT
            for port in KEYED_API_PORTS:
                wait_until(f"/healthz on port {port}", cluster, deadline, lambda port=port: healthy(port))
            probe = cli.create(unique("probe"))
            wait_until(
                "a keyed stream through the keys' Caddy", cluster, deadline, lambda: keyed_one_token(probe, KEYED_CADDY)
            )
        except (RuntimeError, OSError, AssertionError) as error:
            raise pytest.fail.Exception(f"the keyed API servers did not start: {error}", pytrace=False) from None
        yield Keyed(cli, cluster)
    finally:
        stop_processes(cluster, started)


def pytest_configure(config):
    config.addinivalue_line("markers", "run_last: run after every other test (pytest_collection_modifyitems)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Moves the tests marked run_last to the end of the session, whatever the order of the files on the command line
    or of any other plugin's reordering (trylast: this runs after them). test_keys.py's check that no log file
    contains a key uses it: it checks every key in keys_e2e.KEYS_SEEN, which test_keys.py, test_limits.py and
    test_charges.py all add to, so it must come after all of them to check them all. A hook rather than a module that
    sorts last, because `pytest test_keys.py test_limits.py test_charges.py` runs the files in the order given; a
    test rather than a fixture's teardown, so that a leak is reported as that test's failure."""
    last = [item for item in items if item.get_closest_marker("run_last")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("run_last")] + last


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from faults import HEADER, RESULTS

    if RESULTS:
        terminalreporter.section("fault injection")
        terminalreporter.write_line(HEADER)
        for verdict in RESULTS:
            terminalreporter.write_line(verdict.row())
    cluster = config.stash.get(CLUSTER, None)
    if exitstatus != 0:
        if cluster is not None:
            terminalreporter.section("handoff process logs")
            terminalreporter.write_line(cluster.log_tails())
        elif (path := config.stash.get(LOG_DIR, None)) is not None:  # the system never started: the upstreams' logs
            terminalreporter.section("upstream process logs")
            for log in sorted(path.glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()[-40:]
                terminalreporter.write_line(f"----- {log.stem} (last {len(lines)} lines of {log}) -----")
                terminalreporter.write_line("\n".join(lines))
