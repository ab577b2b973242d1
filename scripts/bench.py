#!/usr/bin/env python3
"""`make bench`: starts the stack as `make run` does (release binaries, its own Postgres cluster and Caddy, on
ports 28080-28083 and 26439 so a running `make run` is untouched), runs every scenario of `handoff-bench` on a
fresh stack, and writes BENCHMARKS.md with a table and an SVG plot of latency against request rate.

The hand-off scenario runs twice on one stack, keyless (`HANDOFF_AUTH=off`, as every other scenario) and with an
API key (`HANDOFF_AUTH=required`, limits never reached), to show what keys and limits add to the hand-off. The
metrics scenario runs the hand-off and throughput with every process's metrics on and off (`HANDOFF_METRICS`), to
show what Prometheus metrics cost on the hot path.

The cost scenario (issue 24) prices a streamed token (WAL bytes, each process's CPU, bytes on disk per stored event)
for this commit's binaries against those of BASELINE, the commit before issue 24, in alternating rounds of one run; it
takes the baseline's release binaries from ~/.cache/handoff/bench-baseline/<BASELINE>/, which
scripts/bench-baseline.sh (run first) builds once if missing, or from `--baseline-bin-dir`. The HA scenario (issue 23)
runs the hand-off on a Patroni pair of its own (scripts/ha.sh: synchronous replication, through HAProxy) against
the single node, alternating, and reads the worker's flush durations. The relay scenario (issue 24) prices relaying a
zero-delay upstream stub with BASELINE's binaries against this commit's, alternating: the first token's overhead over
reading the stub directly, the stack's CPU per completion under 16 openai-python clients and the API server's CPU
per POST; then the same clients through LiteLLM's proxy (scripts/bench-litellm.sh installs it once into
~/.cache/handoff/; reported unavailable if it cannot be installed or started).

A partial run (`--only a,b`) prints its results and writes nothing; with `--merge` it puts them into the committed
benchmarks/results.json of a full run instead (each scenario's results and plan entries replaced, or added where that
run had none; results["merged"][scenario] records the commit, +dirty if Sources/ has changes not committed, the date
and the machine) and writes BENCHMARKS.md and the plot again from it, each merged scenario's section opening with
where and when it was measured: one scenario again without a full run.

`--smoke` runs each scenario for a few seconds at toy sizes and writes nothing: CI's guard against rot. Its cost and
relay scenarios run the current binaries as both old and new (CI never builds the baseline), and its relay scenario
skips LiteLLM; its HA scenario starts the pair too, which adds about 45 s.

This file holds the plans (full and smoke) and the command line; the stacks are bench_session.py's, the scenarios
bench_scenarios.py's, bench_handoff.py's, bench_upstream.py's, bench_continuation.py's, bench_cost.py's, bench_ha.py's
and bench_relay.py's (with bench_litellm.py's clients and peer), the smoke's checks bench_smoke.py's, the merge
bench_merge.py's and the report bench_report.py's (with bench_report_cost.py and bench_report_relay.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from bench_merge import merge, source_commit
from bench_scenarios import run_scenarios
from bench_session import Session, cluster, log
from bench_smoke import check_smoke
from handoff_stack import ROOT

# The "old" of the cost and relay scenarios: the last commit before issue 24's work on the cost per token.
BASELINE = "b814b66f680eac0cdb232b6279a58c31276633eb"
FULL = {
    "rates": [25, 50, 100, 200, 400],
    "latency_seconds": 10,
    "auth_rounds": 3,
    "throughput": [(64, 10)],
    "idle": {"streams": 19000, "processes": 4, "hold": 30},
    "commit": {
        "streams": 1000,
        "token_rates": [5, 10, 20, 30, 50],
        "rounds": {"5": 3, "20": 3},
        "direct_rates": [5, 20],
        "seconds": 8,
        "warmup": 4,
    },
    "upstream": {
        "rates": [10, 100],
        "seconds": 10,
        "direct": 300,
        "relay": {"clients": 64, "seconds": 10, "tokens": 256},
    },
    "real": {"rounds": 5, "tokens": 256, "threads": 1},
    "metrics": {"rounds": 4, "rate": 50, "seconds": 10, "concurrency": 64},
    "continuation": {
        "cut": {"streams": 50, "tokens": 100, "cutAfter": 20, "delayMs": 20},
        "kill": {"streams": 50, "tokens": 100, "delayMs": 50, "killAfter": 2, "lease": 3},
    },
    "cost": {
        "baseline": BASELINE,
        "streams": 1000,
        "rates": [5, 10, 20],
        "rounds": 2,
        "warmup": 5,
        "seconds": 10,
        "tail": 2,
    },
    "ha": {"rates": [50, 200], "rounds": 2, "seconds": 10},
    "relay": {
        "baseline": BASELINE,
        "rounds": 4,
        "direct": 200,
        "rate": 5,
        "seconds": 20,
        "warmup": 2,
        "clients": 16,
        "tokens": 10,
        "loadSeconds": 15,
        "tail": 1,
        "postRate": 100,
        "postSeconds": 15,
        "litellm": {"version": "1.108.7", "rounds": 3},
    },
}
SMOKE = {
    "rates": [20],
    "latency_seconds": 2,
    "auth_rounds": 1,
    "throughput": [(8, 2)],
    "idle": {"streams": 200, "processes": 2, "hold": 2},
    "commit": {"streams": 20, "token_rates": [50], "rounds": {}, "direct_rates": [50], "seconds": 0.8, "warmup": 0.2},
    "upstream": {"rates": [20], "seconds": 2, "direct": 20, "relay": {"clients": 8, "seconds": 2, "tokens": 32}},
    "real": {"rounds": 1, "tokens": 16, "threads": 1},
    "metrics": {"rounds": 2, "rate": 20, "seconds": 2, "concurrency": 8},
    "continuation": {
        "cut": {"streams": 4, "tokens": 30, "cutAfter": 10, "delayMs": 20},
        "kill": {"streams": 6, "tokens": 60, "delayMs": 50, "killAfter": 1, "lease": 3},
    },
    "cost": {"baseline": BASELINE, "streams": 20, "rates": [20], "rounds": 1, "warmup": 1, "seconds": 1.5, "tail": 1},
    "ha": {"rates": [20], "rounds": 1, "seconds": 2},
    "relay": {
        "baseline": BASELINE,
        "rounds": 1,
        "direct": 20,
        "rate": 5,
        "seconds": 2,
        "warmup": 1,
        "clients": 4,
        "tokens": 10,
        "loadSeconds": 2,
        "tail": 0.5,
        "postRate": 20,
        "postSeconds": 2,
        "litellm": None,
    },
}
ALL = ("idle", "handoff", "commit", "throughput", "upstream", "real", "metrics", "continuation", "cost", "ha", "relay")
RESULTS = ROOT / "benchmarks" / "results.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds per scenario; writes no report")
    parser.add_argument("--bin-dir", type=Path, default=ROOT / ".build" / "release")
    parser.add_argument(
        "--baseline-bin-dir",
        type=Path,
        help="the old binaries of the cost and relay scenarios (default: BASELINE's, built once by scripts/bench-baseline.sh; smoke: --bin-dir's)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--only",
        default=",".join(ALL),
        help="comma-separated scenarios to run; a partial run prints its results and writes no report (but --merge)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: put the results into benchmarks/results.json (a full run's) and write the report again",
    )
    parser.add_argument("--idle-streams", type=int, help="streams of the idle scenario (default 19000, smoke 200)")
    options = parser.parse_args()
    plan = json.loads(json.dumps(SMOKE if options.smoke else FULL))
    if options.idle_streams:
        plan["idle"]["streams"] = options.idle_streams
    only = set(options.only.split(","))
    if only - set(ALL):
        parser.error(f"unknown scenarios {', '.join(sorted(only - set(ALL)))} (known: {', '.join(ALL)})")
    if options.merge and (options.smoke or options.idle_streams or only == set(ALL)):
        parser.error("--merge takes --only's scenarios of a full plan: not with --smoke or --idle-streams, nor all")
    if options.merge and not RESULTS.exists():
        parser.error(f"--merge: no {RESULTS.relative_to(ROOT)} of a full run to merge into")
    commit = source_commit() if options.merge else ""
    baseline = options.baseline_bin_dir
    if baseline is None and only & {"cost", "relay"} and not options.smoke:
        built = subprocess.run(
            [str(ROOT / "scripts" / "bench-baseline.sh"), plan["cost"]["baseline"]],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        baseline = Path(built.stdout.strip().splitlines()[-1])

    with cluster(), tempfile.TemporaryDirectory(prefix="handoff-bench-") as logs:
        session = Session(options.bin_dir.resolve(), Path(logs), baseline.resolve() if baseline else None)
        results = run_scenarios(plan, session, only)

    if options.smoke and only == set(ALL):
        check_smoke(results)
        return
    if options.merge:
        results = merge(json.loads(RESULTS.read_text()), results, [name for name in ALL if name in only], commit)
    elif options.smoke or only != set(ALL) or options.idle_streams:
        print(json.dumps({k: v for k, v in results.items() if k != "plan"}, indent=2))
        return
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    from bench_report import write_report

    write_report(results, options.out, RESULTS.parent / "latency.svg")
    merged = f" ({', '.join(sorted(only))} merged into the full run's)" if options.merge else ""
    log(f"wrote {options.out.relative_to(ROOT)}, benchmarks/latency.svg and benchmarks/results.json{merged}")


if __name__ == "__main__":
    main()
