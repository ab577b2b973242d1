"""BENCHMARKS.md's section on what relaying an upstream costs (bench_relay.py, issue 24): the first token's overhead,
the stack's CPU per completion and the API server's CPU per POST, this commit's binaries against the baseline commit's
in the same run, and the CPU per completion against LiteLLM's proxy in front of the same stub. bench_report.py puts
it in the report."""

from __future__ import annotations

from bench_cost import PROCESSES
from bench_merge import note
from bench_targets import fmt, times


def relay_section(results: dict) -> list[str]:
    relay = results.get("relay")
    if not relay:
        return []
    plan = results["plan"]["relay"]
    old, new, peer = relay["old"], relay["new"], relay["litellm"]
    lines = [
        "## Relaying an upstream: against the baseline and LiteLLM",
        "",
        *note(results, "relay"),
        "What relaying a model costs: this commit's release binaries (*new*) against those of "
        f"{relay['baseline'][:7]} (*old*, the commit before",
        "issue 24), in one run on one machine, with `scripts/fast_upstream.py` (a zero-delay OpenAI-compatible stub) as",
        f"the catalogue model `fast`. The sets alternate ABBA ({plan['rounds']} round{'s' if plan['rounds'] != 1 else ''} "
        "each), each round on a fresh stack; each figure is the",
        "median of a set's rounds. *Direct* is the stub's first content chunk read straight from it "
        f"({plan['direct']} requests one after",
        "another, before the stack starts); *relayed* the same through Caddy, `handoff-bench handoff --model fast` at "
        f"{plan['rate']} requests/s",
        f"for {plan['seconds']:g} s after a warm-up; the *overhead* is relayed p50 − direct p50. *CPU per completion*: "
        f"{plan['clients']} openai-python clients",
        f"stream completions of {plan['tokens']} content tokens with `include_usage` through Caddy's `/v1` for "
        f"{plan['loadSeconds']:g} s (after {plan['warmup']:g} s of the",
        "same); it is utime + stime from /proc of the API server, worker, both replicas, Caddy and Postgres (the "
        "cluster's",
        f"postmaster with every process it forked or reaped), from before the clients start to {plan['tail']:g} s after "
        "the last completion,",
        "÷ the completions that ended with their usage chunk. The clients' own CPU is not counted.",
        "*CPU per POST*: `handoff-bench handoff` (the demo model, 1-token completions) through Caddy at "
        f"{plan['postRate']} requests/s",
        f"for {plan['postSeconds']:g} s after a warm-up of the same; it is utime + stime of the API server alone over "
        "that run, ÷ the POSTs",
        "completed: the hand-off itself, without the generation (the worker's) or the stream (a replica's).",
        "The floor is read by a Python client on a fresh connection per request, the relayed figure by `handoff-bench`",
        "over Caddy's kept-alive ones: the overhead is the difference of two methods, so the relayed p50s' own ratio is",
        "shown too.",
        "",
        "| | old | new | new ÷ old |",
        "| --- | --- | --- | --- |",
    ]
    for label, key in (
        ("stub read directly, first token p50 (ms)", ("directFirstTokenMilliseconds", "p50")),
        ("relayed first token p50 (ms)", ("firstTokenMilliseconds", "p50")),
        ("relayed first token p99 (ms)", ("firstTokenMilliseconds", "p99")),
        ("first token's overhead, p50 (ms)", ("firstTokenOverheadMilliseconds",)),
        (f"completions/s, {plan['clients']} clients", ("clients", "completionsPerSecond")),
        ("stack CPU per completion (µs)", ("stackCpuMicrosecondsPerCompletion",)),
        *((f"— {name} (µs)", ("cpuMicrosecondsPerCompletion", name)) for name in PROCESSES),
        ("hand-off CPU per POST, the API server's (µs)", ("apiCpuMicrosecondsPerPost",)),
    ):
        a, b = dig(old, key), dig(new, key)
        digits = 2 if key[0].endswith("Milliseconds") else 0
        lines.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {times(b / a if a > 0 else None)} |")
    if relay.get("sameBinaries"):
        lines += ["", "Old and new were the same binaries in this run: the ratios show the method's noise."]
    lines.append("")
    if peer["available"]:
        lines += [
            f"LiteLLM's proxy {peer['version']} (`litellm[proxy]`, one worker, no master key and no database: as keyless as "
            "the stacks",
            f"above) in front of the same stub, with the same clients ({len(peer['windows'])} windows, the median): "
            f"{fmt(peer['cpuMicrosecondsPerCompletion'], 0)} µs of CPU",
            f"per completion (its process tree) at {fmt(peer['clients']['completionsPerSecond'], 0)} completions/s"
            + (f" ({fmt(peer['clients']['errors'], 0)} failed per window)" if peer["clients"]["errors"] else "")
            + ";",
            f"new ÷ LiteLLM {times(relay['ratio']['litellm'])}. Its first token, one request at a time: "
            f"p50 {fmt(peer['firstTokenMilliseconds']['p50'], 2)} ms against the stub's "
            f"{fmt(peer['directFirstTokenMilliseconds']['p50'], 2)} ms",
            f"read directly (overhead {fmt(peer['firstTokenOverheadMilliseconds'], 2)} ms; a closed loop, not "
            "`handoff-bench`'s open one).",
            "",
        ]
    lines += [
        "Its targets are in the table *Against the targets* above.",
        "",
        "Alone: `.venv/bin/python scripts/bench.py --only relay` (prints its JSON; `--baseline-bin-dir DIR` for other",
        "old binaries; LiteLLM is installed once into `~/.cache/handoff/litellm-<version>/` by scripts/bench-litellm.sh).",
        "",
    ]
    return lines


def dig(figures: dict, key: tuple[str, ...]) -> float:
    for part in key:
        figures = figures[part]
    return figures
