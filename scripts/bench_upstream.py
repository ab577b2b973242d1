"""The scenarios with a model behind Handoff: scenario 6 relays a zero-delay OpenAI-compatible stub
(scripts/fast_upstream.py) and prices the relay against the demo model and against reading the stub directly;
scenario 7 runs a real model (llama.cpp's llama-server) and compares its decode rate directly and through
Handoff. Each model is a catalogue entry of its own, on a port below the ephemeral range."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_samplers import CPUSampler
from bench_session import PORTS, Session, bench, log
from handoff_stack import ROOT, Stack
from sse_client import stream_events

FAST_UPSTREAM_PORT = 28090
LLAMA_PORT = 28092


def catalogue(path: Path, name: str, port: int, model: str) -> dict[str, str]:
    """A model catalogue with `demo` and one upstream model; the settings that give it to every process."""
    path.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "demo", "backend": "demo"},
                    {
                        "name": name,
                        "backend": "openai",
                        "upstreams": [
                            {"base_url": f"http://127.0.0.1:{port}/v1", "model": model, "max_concurrent_requests": 512}
                        ],
                    },
                ]
            }
        )
    )
    return {"HANDOFF_MODELS_FILE": str(path)}


def upstream_relay(plan: dict, session: Session) -> dict:
    """Scenario 6: what relaying an upstream costs. The zero-delay stub's first token through Handoff against the
    demo model's (today's hand-off) and against reading the stub directly; then how many upstream chunks one
    worker relays per second, with every process's CPU."""
    stub = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "fast_upstream.py"), "--port", str(FAST_UPSTREAM_PORT)]
    )
    try:
        wait_for_port(FAST_UPSTREAM_PORT)
        direct = direct_first_tokens(FAST_UPSTREAM_PORT, "fast", plan["direct"])
        settings = catalogue(session.log_root / "models-fast.json", "fast", FAST_UPSTREAM_PORT, "fast")

        def measure(stack: Stack) -> dict:
            rows = []
            for rate in plan["rates"]:
                row = {"rate": rate}
                for model in ("demo", "fast"):
                    log(f"scenario 6: first token at {rate} requests/s, model {model}")
                    row[model] = bench(
                        session.bin_dir,
                        "handoff",
                        "--port",
                        str(PORTS.caddy),
                        "--rate",
                        str(rate),
                        "--duration",
                        str(plan["seconds"]),
                        "--model",
                        model,
                    )
                rows.append(row)
            relay = plan["relay"]
            log(f"scenario 6: relay throughput, {relay['clients']} clients, {relay['tokens']} chunks per reply")
            with CPUSampler(stack) as cpu:
                row = bench(
                    session.bin_dir,
                    "throughput",
                    "--port",
                    str(PORTS.caddy),
                    "--model",
                    "fast",
                    "--concurrency",
                    str(relay["clients"]),
                    "--duration",
                    str(relay["seconds"]),
                    "--tokens",
                    str(relay["tokens"]),
                )
            row["cpuPercent"] = cpu.percent
            row["chunksPerSecond"] = row["completionsPerSecond"] * relay["tokens"]
            return {"firstToken": rows, "direct": direct, "relay": row}

        return session.run(True, measure, worker_settings={"HANDOFF_WORKER_CONCURRENCY": "256"}, **settings)
    finally:
        stub.terminate()
        stub.wait(timeout=10)


def real_model(plan: dict, session: Session) -> dict:
    """Scenario 7: a real model (llama.cpp's llama-server, SmolLM2-135M, CPU): decode tokens/s read directly and
    through Handoff, alternating, with the same greedy request (`ignore_eos`, a llama.cpp field, passes through)."""
    server_log = open(session.log_root / "llama-server.log", "wb")
    # One decode thread: on this 2-core machine a model using both cores is slowed by whatever else runs, Handoff
    # included, and the ratio would measure the CPU contention, not the relay. (Both cores: see the closing note of
    # issue 9, 0.67.) A model server on its own host, as in production, has no such contention.
    server = subprocess.Popen(
        [str(ROOT / "scripts" / "llama-server.sh"), "run", str(LLAMA_PORT)],
        env={**os.environ, "HANDOFF_LLAMA_ARGS": f"--threads {plan['threads']}"},
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(LLAMA_PORT, path="/health", timeout=900)
        settings = catalogue(session.log_root / "models-local.json", "local", LLAMA_PORT, "smollm2")
        body = {
            "stream": True,
            "max_tokens": plan["tokens"],
            "temperature": 0,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell me a long story about a unicorn."}],
        }

        def measure(stack: Stack) -> dict:
            direct, handoff = [], []
            for _ in range(plan["rounds"]):
                direct.append(
                    decode_rate(f"http://127.0.0.1:{LLAMA_PORT}/v1/chat/completions", {**body, "model": "smollm2"})
                )
                handoff.append(
                    decode_rate(f"http://127.0.0.1:{PORTS.caddy}/v1/chat/completions", {**body, "model": "local"})
                )
            median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
            return {
                "threads": plan["threads"],
                "direct": direct,
                "handoff": handoff,
                "ratio": median([h["tokensPerSecond"] for h in handoff])
                / median([d["tokensPerSecond"] for d in direct]),
            }

        return session.run(True, measure, **settings)
    finally:
        server.terminate()
        server.wait(timeout=10)
        server_log.close()


def wait_for_port(port: int, path: str = "/", timeout: float = 30) -> None:
    """Waits until the server on `port` answers a GET of `path` with less than 500."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port}{path} within {timeout} s")


def direct_first_tokens(port: int, model: str, count: int) -> dict:
    """The stub's first content chunk, read straight from it: the floor under any relay."""
    times = []
    for index in range(count):
        body = {
            "model": model,
            "stream": True,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": f"d{index}"}],
        }
        times.append(
            next(
                t
                for t, chunk in stream_events(f"http://127.0.0.1:{port}/v1/chat/completions", body)
                if chunk.get("choices") and chunk["choices"][0]["delta"].get("content")
            )
            * 1000
        )
    times.sort()
    return {"count": count, "p50": times[len(times) // 2], "p99": times[min(len(times) - 1, int(len(times) * 0.99))]}


def decode_rate(url: str, body: dict) -> dict:
    """Tokens per second between the first and the last content chunk, and the first token's delay."""
    stamps = [
        t
        for t, chunk in stream_events(url, body)
        if chunk.get("choices") and chunk["choices"][0]["delta"].get("content")
    ]
    return {
        "tokens": len(stamps),
        "firstTokenMs": stamps[0] * 1000,
        "tokensPerSecond": (len(stamps) - 1) / max(1e-9, stamps[-1] - stamps[0]),
    }
