"""The scenarios of `make bench`, each on a fresh stack: `run_scenarios` runs those a plan names, in order, and
collects their results. Here too the scenarios within the stack: idle streams on one replica (3), commit-to-client
latency (2), throughput and Postgres's footprint (4 and 5); the hand-off comparisons are in bench_handoff.py, the
upstream models in bench_upstream.py, the cost per token against a baseline commit in bench_cost.py, synchronous
replication's cost in bench_ha.py, relaying an upstream against a baseline commit and LiteLLM in bench_relay.py and bench_litellm.py."""

from __future__ import annotations

from bench_continuation import continuation
from bench_cost import cost
from bench_ha import replication_cost
from bench_handoff import handoff_latency, median_of, metrics_cost
from bench_relay import relay
from bench_samplers import ConnectionSampler, CPUSampler, StatementProfile, database_counters, flush_timing
from bench_session import PORTS, Session, bench, log, machine
from bench_upstream import real_model, upstream_relay
from handoff_stack import Stack


def run_scenarios(plan: dict, session: Session, only: set[str]) -> dict:
    """Runs the scenarios of `plan` that `only` names; their results, with the machine and the plan."""
    results: dict = {"machine": machine(), "plan": plan}
    if "idle" in only:
        results["idle"] = idle_streams(plan["idle"], session)
    if "handoff" in only:
        measured = handoff_latency(plan, session)
        results["handoff"], results["handoffAuth"], results["handoffRounds"] = (
            measured["off"],
            measured["required"],
            measured["rounds"],
        )
    if "commit" in only:
        results["commit"] = commit_latency(plan["commit"], session)
    if "throughput" in only:
        results["throughput"] = throughput(plan["throughput"], session)
    if "upstream" in only:
        results["upstream"] = upstream_relay(plan["upstream"], session)
    if "real" in only:
        results["real"] = real_model(plan["real"], session)
    if "metrics" in only:
        results["metrics"] = metrics_cost(plan["metrics"], session)
    if "continuation" in only:
        results["continuation"] = continuation(plan["continuation"], session)
    if "cost" in only:
        results["cost"] = cost(plan["cost"], session)
    if "ha" in only:
        results["ha"] = replication_cost(plan["ha"], session)
    if "relay" in only:
        results["relay"] = relay(plan["relay"], session)
    return results


def idle_streams(idle: dict, session: Session) -> dict:
    """Scenario 3: how many idle streams one replica holds, and at what memory each."""
    log(f"scenario 3: {idle['streams']} idle streams on one replica, straight to it, no worker running")
    # No worker: every stream's task stays queued, more of them than HANDOFF_MAX_QUEUED's default lets in.
    return session.run(
        False,
        lambda stack: bench(
            session.bin_dir,
            "idle",
            "--api-port",
            str(PORTS.api),
            "--sse-port",
            str(PORTS.sse[0]),
            "--sse-pid",
            str(stack.pid(f"sse-{PORTS.sse[0]}")),
            "--streams",
            str(idle["streams"]),
            "--processes",
            str(idle["processes"]),
            "--hold",
            str(idle["hold"]),
        ),
        HANDOFF_MAX_QUEUED="0",
    )


def throughput(plan: list, session: Session) -> list[dict]:
    """Scenarios 4 and 5: completions per second of closed-loop clients, with Postgres's connections, commits and
    rows, and every process's CPU."""

    def measure(stack: Stack) -> list[dict]:
        rows = []
        for concurrency, seconds in plan:
            log(f"scenarios 4 and 5: throughput with {concurrency} clients for {seconds} s, sampling Postgres")
            before = database_counters(stack)
            with ConnectionSampler(stack) as sampler, CPUSampler(stack) as cpu:
                row = bench(
                    session.bin_dir,
                    "throughput",
                    "--port",
                    str(PORTS.caddy),
                    "--concurrency",
                    str(concurrency),
                    "--duration",
                    str(seconds),
                )
            row["cpuPercent"] = cpu.percent
            after = database_counters(stack)
            delta = {key: after[key] - before[key] for key in before}
            row["postgres"] = {
                "peak_connections": sampler.peak,
                **delta,
                "commits_per_minibatch": delta["commits"] / max(1, delta["stream_rows"]),
                "events_per_minibatch": delta["events"] / max(1, delta["stream_rows"]),
            }
            rows.append(row)
        return rows

    return session.run(True, measure)


def commit_latency(plan: dict, session: Session) -> list[dict]:
    """Scenario 2 at each token rate per stream, on a fresh stack per run: through Caddy (`rounds` runs at the
    rates the targets name, one elsewhere) and, at `direct_rates`, once straight from the replicas, which prices
    Caddy's hop. One row per rate and path: each figure the median of its runs, every run kept under `runs`."""
    rows = []
    for rate in plan["token_rates"]:
        tokens = int(rate * (plan["seconds"] + plan["warmup"]))
        for path in ("caddy", "direct"):
            if path == "direct" and rate not in plan["direct_rates"]:
                continue
            count = plan["rounds"].get(str(rate), 1) if path == "caddy" else 1
            runs = []
            for round_ in range(count):
                log(
                    f"scenario 2: commit-to-client latency, {plan['streams']} streams at {rate} tokens/s each, "
                    f"{'through Caddy' if path == 'caddy' else 'straight from the replicas'} (run {round_ + 1} of {count})"
                )

                def committed(stack: Stack) -> dict:
                    direct = (
                        [arg for port in PORTS.sse for arg in ("--replica-port", str(port))] if path == "direct" else []
                    )
                    with CPUSampler(stack) as cpu, StatementProfile(stack) as statements:
                        row = bench(
                            session.bin_dir,
                            "commit-latency",
                            "--port",
                            str(PORTS.caddy),
                            "--streams",
                            str(plan["streams"]),
                            "--tokens",
                            str(tokens),
                            "--warmup",
                            str(plan["warmup"]),
                            "--database-url",
                            stack.database_url,
                            *direct,
                        )
                    return {
                        **row,
                        "cpuPercent": cpu.percent,
                        "statements": statements.statements,
                        "flush": flush_timing(stack),
                    }

                runs.append(
                    session.run(
                        True,
                        committed,
                        HANDOFF_BENCH_STAMPS="1",
                        worker_settings={
                            "HANDOFF_DEMO_TOKEN_DELAY_MS": str(1000 // rate),
                            "HANDOFF_WORKER_CONCURRENCY": str(plan["streams"] + 100),
                        },
                    )
                )
            rows.append({**median_of(runs), "tokensPerSecond": rate, "runs": runs})
    return rows
