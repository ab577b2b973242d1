"""The relay scenario's clients and its peer (bench_relay.py, issue 24): `clients` openai-python clients streaming
completions through an OpenAI-compatible `/v1` (Caddy's in front of a Handoff stack, or LiteLLM's), and LiteLLM's
proxy (scripts/bench-litellm.sh installs it once) in front of the same zero-delay stub as the stacks, priced by its
process tree's CPU per completion under the same clients. The clients live here, below bench_relay.py, because both
the stacks and the peer are measured with them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

from bench_handoff import median_of
from bench_samplers import CPUSampler
from bench_session import Session, log
from bench_upstream import FAST_UPSTREAM_PORT, direct_first_tokens, wait_for_port
from handoff_stack import ROOT

LITELLM_PORT = 28094


def per_completion(ticks: int, clients: dict) -> float:
    """A window's CPU ticks in µs per completion that ended whole."""
    if not clients["completed"]:
        raise RuntimeError(f"relay: no completion ended whole in the window ({clients})")
    return ticks / CPUSampler.TICKS * 1e6 / clients["completed"]


def load(base_url: str, plan: dict, seconds: float) -> dict:
    """`clients` openai-python clients streaming completions of `tokens` content tokens (with the usage chunk) for
    `seconds`, each starting its next when its last ended; returns once every one has ended."""
    from openai import AsyncOpenAI, OpenAIError  # only this scenario needs the SDK

    tally = {"completed": 0, "errors": 0, "contentTokens": 0}

    async def client(sdk: AsyncOpenAI, index: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                stream = await sdk.chat.completions.create(
                    model="fast",
                    messages=[{"role": "user", "content": f"Tell me a story, {index}."}],
                    max_tokens=plan["tokens"],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                tokens, usage = 0, None
                async for chunk in stream:
                    tokens += sum(1 for choice in chunk.choices if choice.delta.content)
                    usage = chunk.usage or usage
            except OpenAIError:
                tokens, usage = 0, None
            if usage is None:
                tally["errors"] += 1
                await asyncio.sleep(0.1)  # a failing stack is not hammered
            else:
                tally["completed"] += 1
                tally["contentTokens"] += tokens

    async def run() -> float:
        sdk = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=30)
        start = time.monotonic()
        try:
            await asyncio.gather(*(client(sdk, index, start + seconds) for index in range(plan["clients"])))
        finally:
            await sdk.close()
        return time.monotonic() - start

    elapsed = asyncio.run(run())
    return {
        **tally,
        "seconds": round(elapsed, 3),
        "completionsPerSecond": tally["completed"] / elapsed,
        "contentTokensPerCompletion": tally["contentTokens"] / max(1, tally["completed"]),
    }


def litellm(plan: dict, session: Session) -> dict:
    """LiteLLM's proxy (plan["litellm"]: its version and windows) in front of the stub: its first token over the stub's
    (one request at a time, informative) and its process tree's CPU per completion under the same clients."""
    peer = plan["litellm"]
    installed = subprocess.run(
        [str(ROOT / "scripts" / "bench-litellm.sh"), peer["version"]], stdout=subprocess.PIPE, text=True
    )
    if installed.returncode != 0:
        log(f"relay: LiteLLM {peer['version']} could not be installed: reported unavailable")
        return {"available": False, "version": peer["version"], "reason": "scripts/bench-litellm.sh failed"}
    venv = Path(installed.stdout.strip().splitlines()[-1])
    config = session.log_root / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: fast\n    litellm_params:\n      model: openai/fast\n"
        f"      api_base: http://127.0.0.1:{FAST_UPSTREAM_PORT}/v1\n      api_key: none\n"
    )
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # its price list from the package, not fetched from GitHub
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",  # keyless, as HANDOFF_AUTH=off
    }
    argv = [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(LITELLM_PORT)]
    with open(session.log_root / "litellm.log", "wb") as output:
        server = subprocess.Popen([*argv, "--num_workers", "1"], env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        if not started(server, time.monotonic() + 180):
            log(f"relay: LiteLLM did not start (exit status {server.poll()}): reported unavailable")
            reason = f"it did not start (exit status {server.poll()}; see its log, litellm.log)"
            return {"available": False, "version": peer["version"], "reason": reason}
        log(f"relay: LiteLLM {peer['version']}, {peer['rounds']} windows of {plan['loadSeconds']} s")
        base_url = f"http://127.0.0.1:{LITELLM_PORT}/v1"
        load(base_url, plan, plan["warmup"])  # its first requests are slow (p99 in the hundreds of ms): not measured
        direct = direct_first_tokens(FAST_UPSTREAM_PORT, "fast", plan["direct"])
        relayed = direct_first_tokens(LITELLM_PORT, "fast", plan["direct"])
        windows = []
        for _ in range(peer["rounds"]):
            before = CPUSampler.tree_ticks(server.pid)
            clients = load(base_url, plan, plan["loadSeconds"])
            time.sleep(plan["tail"])
            windows.append(
                {
                    "clients": clients,
                    "cpuMicrosecondsPerCompletion": per_completion(CPUSampler.tree_ticks(server.pid) - before, clients),
                }
            )
        if server.poll() is not None:
            raise RuntimeError(f"relay: LiteLLM exited ({server.returncode}); see {session.log_root / 'litellm.log'}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
    return {
        "available": True,
        "version": peer["version"],
        "directFirstTokenMilliseconds": direct,
        "firstTokenMilliseconds": relayed,
        "firstTokenOverheadMilliseconds": relayed["p50"] - direct["p50"],
        **median_of(windows),
        "windows": windows,
    }


def started(server: subprocess.Popen, deadline: float) -> bool:
    """Whether LiteLLM answers its liveness probe before `deadline`; false at once if it exits first (it refuses to
    start on a configuration it disallows)."""
    while server.poll() is None and time.monotonic() < deadline:
        try:
            wait_for_port(LITELLM_PORT, path="/health/liveliness", timeout=1)
            return True
        except RuntimeError:
            continue
    return False
