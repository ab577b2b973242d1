"""Issue 24's relay scenario: what relaying an upstream model costs, this commit's binaries ("new") against those of
the baseline commit ("old", the cost scenario's BASELINE; scripts/bench-baseline.sh builds them once) in one run, and
against the peer, LiteLLM's proxy (scripts/bench-litellm.sh installs it once), in front of the same upstream.

The upstream is scripts/fast_upstream.py, a zero-delay OpenAI-compatible stub, as the catalogue model `fast`. Rounds
alternate the binary sets ABBA (old, new, new, old, ...), as bench_cost.py does, each on a fresh stack:
- first token: the stub read directly, one request at a time (bench_upstream.direct_first_tokens, before the stack
  starts), then `handoff-bench handoff --model fast` through Caddy at `rate` requests/s (about one at a time) after a
  short warm-up. The overhead is the relayed first token's p50 minus the direct one's;
- CPU per completion: `clients` openai-python clients (AsyncOpenAI, one process, not counted) stream completions of
  `tokens` content tokens with `include_usage` through Caddy's `/v1` (Caddy follows the hand-off itself) for
  `loadSeconds` after `warmup` s of the same. CPU is utime + stime from /proc of the API server, the worker, both replicas, Caddy
  and Postgres (the cluster's postmaster, the processes it forked and those it reaped) from before the clients start
  to `tail` s after the last completion ended, divided by the completions that ended with their usage chunk.
Per side each figure is the median of its rounds; the ratios are new / old. Then LiteLLM (one worker, no master key
and no database, as keyless as the Handoff stacks) in front of the same stub, with the same clients: its process
tree's CPU per completion, the median of `rounds` windows, and new / LiteLLM. If LiteLLM cannot be installed or
started, the scenario says so and keeps the old and new figures."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_cost import PROCESSES
from bench_handoff import abba, median_of
from bench_samplers import CPUSampler
from bench_session import ADMIN_URL, PORTS, Session, bench, log
from bench_upstream import FAST_UPSTREAM_PORT, catalogue, direct_first_tokens, wait_for_port
from handoff_stack import ROOT, Stack, psql

LITELLM_PORT = 28094
# The same for both binary sets: more task slots than clients, so no completion waits for one.
WORKER_SETTINGS = {"HANDOFF_WORKER_CONCURRENCY": "64"}


def relay(plan: dict, session: Session) -> dict:
    """Every round, old and new alternating, then LiteLLM; each side's medians and the ratios."""
    bins = {"old": session.baseline_bin_dir, "new": session.bin_dir}
    stub = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "fast_upstream.py"), "--port", str(FAST_UPSTREAM_PORT)]
    )
    try:
        wait_for_port(FAST_UPSTREAM_PORT)
        settings = catalogue(session.log_root / "models-relay.json", "fast", FAST_UPSTREAM_PORT, "fast")
        data_directory = psql(ADMIN_URL, "SHOW data_directory")
        postmaster = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])
        rounds = []
        for _, round_, side in abba([plan["rate"]], plan["rounds"], "old", "new"):
            log(f"relay: {side} binaries ({bins[side]}), round {round_ + 1} of {plan['rounds']}")
            direct = direct_first_tokens(FAST_UPSTREAM_PORT, "fast", plan["direct"])
            with session.running(True, WORKER_SETTINGS, bin_dir=bins[side], **settings) as stack:
                measured = handoff_round(plan, stack, postmaster, session)
            overhead = measured["firstTokenMilliseconds"]["p50"] - direct["p50"]
            figures = {"directFirstTokenMilliseconds": direct, "firstTokenOverheadMilliseconds": overhead, **measured}
            rounds.append({"side": side, "round": round_, **figures})
        peer = {"available": False, "reason": "not in this plan"}
        if plan.get("litellm"):
            try:
                peer = litellm(plan, session)
            except Exception as error:  # the peer's failure costs the old and new figures nothing
                log(f"relay: LiteLLM failed ({error}): reported unavailable")
                peer = {"available": False, "version": plan["litellm"]["version"], "reason": f"it failed: {error}"}
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    sides = {
        side: median_of(
            [{k: v for k, v in r.items() if k not in ("side", "round")} for r in rounds if r["side"] == side]
        )
        for side in ("old", "new")
    }
    cpu = sides["new"]["stackCpuMicrosecondsPerCompletion"]
    return {
        "baseline": plan["baseline"],
        "sameBinaries": bins["old"].resolve() == bins["new"].resolve(),
        **sides,
        "ratio": {
            "firstTokenOverheadMilliseconds": ratio(
                sides["old"]["firstTokenOverheadMilliseconds"], sides["new"]["firstTokenOverheadMilliseconds"]
            ),
            "stackCpuMicrosecondsPerCompletion": ratio(sides["old"]["stackCpuMicrosecondsPerCompletion"], cpu),
            "litellm": ratio(peer["cpuMicrosecondsPerCompletion"], cpu) if peer["available"] else None,
        },
        "litellm": peer,
        "rounds": rounds,
    }


def ratio(reference: float, measured: float) -> float | None:
    """measured / reference; None where the reference is no cost at all (an overhead at or below zero)."""
    return measured / reference if reference > 0 else None


def handoff_round(plan: dict, stack: Stack, postmaster: int, session: Session) -> dict:
    """One round on a fresh stack: the relayed first token at `rate`, then the clients' CPU window."""
    stack.wait_routed(time.monotonic() + 60)
    caddy = ("--port", str(PORTS.caddy), "--model", "fast")
    warm = bench(session.bin_dir, "handoff", *caddy, "--rate", "20", "--duration", str(plan["warmup"]))
    latency = bench(session.bin_dir, "handoff", *caddy, "--rate", str(plan["rate"]), "--duration", str(plan["seconds"]))
    if warm["errors"] or latency["errors"] or not latency["completed"]:
        raise RuntimeError(f"relay: the relayed hand-off failed (warm-up {warm}, measured {latency})")
    base_url = f"http://127.0.0.1:{PORTS.caddy}/v1"
    load(base_url, plan, plan["warmup"])

    def ticks() -> dict[str, int]:
        return {
            name: CPUSampler.cluster_ticks(postmaster) if name == "postgres" else CPUSampler.ticks(stack.pid(name))
            for name in PROCESSES
        }

    before = ticks()
    clients = load(base_url, plan, plan["loadSeconds"])
    time.sleep(plan["tail"])
    after = ticks()
    stack.check_alive()
    if clients["errors"]:
        raise RuntimeError(f"relay: completions failed through Caddy's /v1 ({clients})")
    cpu = {name: per_completion(after[name] - before[name], clients) for name in PROCESSES}
    return {
        "firstTokenMilliseconds": {key: latency["firstTokenMilliseconds"][key] for key in ("p50", "p99")},
        "relayedRequests": latency["completed"],
        "clients": clients,
        "cpuMicrosecondsPerCompletion": cpu,
        "stackCpuMicrosecondsPerCompletion": sum(cpu.values()),
    }


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
            before = tree_ticks(server.pid)
            clients = load(base_url, plan, plan["loadSeconds"])
            time.sleep(plan["tail"])
            windows.append(
                {
                    "clients": clients,
                    "cpuMicrosecondsPerCompletion": per_completion(tree_ticks(server.pid) - before, clients),
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


def tree_ticks(root: int) -> int:
    """The CPU so far, in clock ticks, of a process and every descendant that runs, with the children each has
    reaped."""
    parents: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue  # gone meanwhile
        parents.setdefault(parent, []).append(int(pid))
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        total += CPUSampler.ticks(pid, reaped=True)
        pending += parents.get(pid, [])
    return total
