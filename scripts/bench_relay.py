"""Issue 24's relay scenario: what relaying an upstream model costs, this commit's binaries ("new") against those of
the baseline commit ("old", the cost scenario's BASELINE; scripts/bench-baseline.sh builds them once) in one run, and
against the peer, LiteLLM's proxy (scripts/bench-litellm.sh installs it once), in front of the same upstream.

The upstream is scripts/fast_upstream.py, a zero-delay OpenAI-compatible stub, as the catalogue model `fast`. Rounds
alternate the binary sets ABBA (old, new, new, old, ...), as bench_cost.py does, each on a fresh stack:
- first token: the stub read directly, one request at a time (bench_upstream.direct_first_tokens, before the stack
  starts), then `handoff-bench handoff --model fast` through Caddy at `rate` requests/s (about one at a time) after a
  short warm-up. The overhead is the relayed first token's p50 minus the direct one's;
- CPU per completion: `clients` openai-python clients (bench_litellm.load: AsyncOpenAI, one process, not counted)
  stream completions of `tokens` content tokens with `include_usage` through Caddy's `/v1` (Caddy follows the
  hand-off itself) for `loadSeconds` after `warmup` s of the same. CPU is utime + stime from /proc of the API server,
  the worker, both replicas, Caddy and Postgres (the cluster's postmaster, the processes it forked and those it
  reaped) from before the clients start to `tail` s after the last completion ended, divided by the completions that
  ended with their usage chunk;
- CPU per POST: `handoff-bench handoff` (the demo model, 1-token completions) through Caddy at `postRate` requests/s
  for `postSeconds` after `warmup` s of the same. CPU is utime + stime of the API server alone, over the measured
  run, divided by the POSTs completed: the hand-off itself, without the generation (the worker's) or the stream
  (a replica's), which the relay's CPU per completion already prices.
Per side each figure is the median of its rounds; the ratios are new / old. Then LiteLLM (bench_litellm.py: one
worker, no master key and no database, as keyless as the Handoff stacks) in front of the same stub, with the same
clients: its process tree's CPU per completion, the median of `rounds` windows, and new / LiteLLM. If LiteLLM cannot
be installed or started, the scenario says so and keeps the old and new figures."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench_cost import PROCESSES
from bench_handoff import abba, median_of
from bench_litellm import litellm, load, per_completion
from bench_samplers import CPUSampler
from bench_session import ADMIN_URL, PORTS, Session, bench, log
from bench_upstream import FAST_UPSTREAM_PORT, catalogue, direct_first_tokens, wait_for_port
from handoff_stack import ROOT, Stack, psql

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
            "apiCpuMicrosecondsPerPost": ratio(
                sides["old"]["apiCpuMicrosecondsPerPost"], sides["new"]["apiCpuMicrosecondsPerPost"]
            ),
            "litellm": ratio(peer["cpuMicrosecondsPerCompletion"], cpu) if peer["available"] else None,
        },
        "litellm": peer,
        "rounds": rounds,
    }


def ratio(reference: float, measured: float) -> float | None:
    """measured / reference; None where either is no cost at all (an overhead at or below zero is the noise of its
    floor, not a measurement, and must not count as a target met)."""
    return measured / reference if reference > 0 and measured > 0 else None


def handoff_round(plan: dict, stack: Stack, postmaster: int, session: Session) -> dict:
    """One round on a fresh stack: the relayed first token at `rate`, the clients' CPU window, then the API server's
    CPU per POST."""
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
            name: CPUSampler.tree_ticks(postmaster) if name == "postgres" else CPUSampler.ticks(stack.pid(name))
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
        **post_cpu(plan, stack, session),
    }


def post_cpu(plan: dict, stack: Stack, session: Session) -> dict:
    """The API server's CPU per hand-off: 1-token completions of the demo model POSTed through Caddy at `postRate`
    for `postSeconds`, after `warmup` s of the same (its pools and caches warm). Only the API process is read: the
    POST is all it does in a hand-off, and the worker's generation and a replica's stream would swamp it (one token
    keeps them small, so the load generator and they take little of the 2 cores from the API meanwhile)."""
    log(f"relay: CPU per POST, the demo model at {plan['postRate']} requests/s for {plan['postSeconds']} s")
    post = ("handoff", "--port", str(PORTS.caddy), "--rate", str(plan["postRate"]), "--tokens", "1")
    warm = bench(session.bin_dir, *post, "--duration", str(plan["warmup"]))
    before = CPUSampler.ticks(stack.pid("api"))
    posts = bench(session.bin_dir, *post, "--duration", str(plan["postSeconds"]))
    ticks = CPUSampler.ticks(stack.pid("api")) - before
    stack.check_alive()
    if warm["errors"] or posts["errors"] or not posts["completed"]:
        raise RuntimeError(f"relay: the demo model's hand-offs failed (warm-up {warm}, measured {posts})")
    return {
        "posts": posts["completed"],
        "apiCpuMicrosecondsPerPost": ticks / CPUSampler.TICKS * 1e6 / posts["completed"],
    }
