"""Issue 24's cost scenario: what a streamed token costs the stack (WAL bytes, the CPU of each process, bytes on disk
per stored event), with this commit's binaries ("new") against those of a fixed baseline commit ("old", the plan's
`baseline`; scripts/bench-baseline.sh builds them once), in one run on one machine.

The bench's Postgres cluster and one Caddy (port 28080) stay up throughout. Each round starts the API server, a worker
and two SSE replicas from one binary set on a fresh database, opens `streams` streams at once through Caddy
(`handoff-bench commit-latency`, the client, whose CPU is not counted) and measures a steady window: from `warmup` s
after the streams opened, for `seconds` s, while every stream runs. The sets alternate ABBA at each token rate (old,
new, new, old, ...), as bench_handoff.py alternates settings, so a drift of the VM's speed weighs on both. Over the
window:
- tokens: the events the replicas wrote to clients (their `handoff_sse_events_sent_total`);
- WAL: pg_current_wal_lsn()'s advance (the whole cluster, which nothing else writes to meanwhile), a CHECKPOINT
  before each round so each pays the same full-page images;
- CPU: utime + stime from /proc of the API server, the worker, each replica, Caddy, and Postgres (the cluster's
  postmaster, the processes it forked and those it reaped);
- disk: the growth of pg_total_relation_size('handoff_stream') (heap, indexes, TOAST) per event the worker stored
  (its `handoff_stream_events_written_total`).
Per rate, each figure is the median of a set's rounds; the ratios are new / old."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bench_handoff import abba, median_of
from bench_samplers import CPUSampler, metric_total, scrape
from bench_session import ADMIN_URL, PORTS, Session, bench, log
from handoff_stack import Stack, psql

# Every process whose CPU a round counts, in the report's column order; SERVICES, those of them each round starts
# (Caddy is the front's, which stays up; Postgres is the cluster's).
PROCESSES = ("postgres", "worker", *(f"sse-{port}" for port in PORTS.sse), "caddy", "api")
SERVICES = tuple(name for name in PROCESSES if name not in ("postgres", "caddy"))


def cost(plan: dict, session: Session) -> dict:
    """Every rate's rounds, old and new alternating; per rate the medians of each set and the ratios new / old."""
    bins = {"old": session.baseline_bin_dir, "new": session.bin_dir}
    (session.log_root / "cost-caddy").mkdir()
    front = Stack(ADMIN_URL, PORTS, session.log_root / "cost-caddy", session.bin_dir)
    front.start_caddy()
    data_directory = psql(ADMIN_URL, "SHOW data_directory")
    postmaster = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])
    rounds = []
    try:
        for rate, round_, side in abba(plan["rates"], plan["rounds"], "old", "new"):
            log(
                f"cost: {plan['streams']} streams at {rate} tokens/s, {side} binaries ({bins[side]}), "
                f"round {round_ + 1} of {plan['rounds']}"
            )
            front.check_alive()
            worker_settings = {
                "HANDOFF_DEMO_TOKEN_DELAY_MS": str(1000 // rate),
                "HANDOFF_WORKER_CONCURRENCY": str(plan["streams"] + 100),
            }
            with session.running(True, worker_settings, bin_dir=bins[side], caddy=False) as stack:
                measured = measure(plan, rate, stack, front, postmaster, session)
            rounds.append({"rate": rate, "side": side, "round": round_, **measured})
    finally:
        front.stop()
    return {
        "baseline": plan["baseline"],
        "streams": plan["streams"],
        "sameBinaries": bins["old"].resolve() == bins["new"].resolve(),
        "rows": [summary(rate, [r for r in rounds if r["rate"] == rate]) for rate in plan["rates"]],
        "rounds": rounds,
    }


def measure(plan: dict, rate: int, stack: Stack, front: Stack, postmaster: int, session: Session) -> dict:
    """One round: the streams through Caddy, and the window's readings turned into figures per token."""
    stack.wait_routed(time.monotonic() + 60)
    psql(ADMIN_URL, "CHECKPOINT")
    tokens = int(rate * (plan["warmup"] + plan["seconds"] + plan["tail"]))
    client: dict = {}
    args = ("--port", str(PORTS.caddy), "--streams", str(plan["streams"]), "--tokens", str(tokens))
    thread = threading.Thread(
        target=lambda: client.update(bench(session.bin_dir, "commit-latency", *args, "--warmup", str(plan["warmup"]))),
        daemon=True,
    )
    thread.start()
    time.sleep(plan["warmup"])
    before = reading(stack, front, postmaster, cpu_last=True)
    time.sleep(plan["seconds"])
    after = reading(stack, front, postmaster, cpu_last=False)
    thread.join(timeout=plan["tail"] + plan["seconds"] + 120)
    if client.get("errors", 1) or client.get("completed") != plan["streams"]:
        raise RuntimeError(f"cost: the client's streams did not all end whole: {client or 'no result'}")

    delta = {key: after[key] - before[key] for key in ("at", "tokens", "stored", "wal", "size")}
    if delta["tokens"] <= 0 or delta["stored"] <= 0:
        raise RuntimeError(f"cost: no tokens in the window ({delta})")
    cpu = {
        name: (after["cpu"][name] - before["cpu"][name]) / CPUSampler.TICKS * 1e6 / delta["tokens"]
        for name in PROCESSES
    }
    return {
        "seconds": round(delta["at"], 3),
        "tokens": delta["tokens"],
        "offeredTokensPerSecond": plan["streams"] * rate,
        "tokensPerSecond": delta["tokens"] / delta["at"],
        "walBytesPerToken": delta["wal"] / delta["tokens"],
        "cpuMicrosecondsPerToken": cpu,
        "stackCpuMicrosecondsPerToken": sum(cpu.values()),
        "storedEvents": delta["stored"],
        "bytesPerStoredEvent": delta["size"] / delta["stored"],
        "client": {key: client[key] for key in ("completed", "errors", "eventsPerSecond")},
    }


def reading(stack: Stack, front: Stack, postmaster: int, cpu_last: bool) -> dict:
    """The counters the window is the difference of. The CPU is read innermost (last at the window's start, first at
    its end), so the readings' own queries and scrapes fall outside it as far as they can."""

    def cpu() -> dict:
        ticks = {name: CPUSampler.ticks(stack.pid(name)) for name in SERVICES}
        return {
            **ticks,
            "caddy": CPUSampler.ticks(front.pid("caddy")),
            "postgres": CPUSampler.tree_ticks(postmaster),
        }

    shot = {} if cpu_last else {"cpu": cpu(), "at": time.monotonic()}
    wal, size = stack.sql(
        "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, pg_total_relation_size('handoff_stream')"
    ).split("|")
    shot |= {
        "wal": float(wal),
        "size": int(size),
        "tokens": sum(metric_total(scrape(port), "handoff_sse_events_sent_total") for port in PORTS.sse),
        "stored": metric_total(scrape(stack.worker_ports["worker"]), "handoff_stream_events_written_total"),
    }
    return shot | ({"cpu": cpu(), "at": time.monotonic()} if cpu_last else {})


def summary(rate: int, rounds: list[dict]) -> dict:
    """One rate: each set's medians over its rounds, and new / old of WAL, stack CPU, each process's CPU and disk."""
    sides = {side: median_of([r for r in rounds if r["side"] == side]) for side in ("old", "new")}
    old, new = sides["old"], sides["new"]

    def ratio(a: float, b: float) -> float | None:
        return b / a if a else None

    return {
        "tokensPerSecondPerStream": rate,
        **sides,
        "ratio": {
            "walBytesPerToken": ratio(old["walBytesPerToken"], new["walBytesPerToken"]),
            "stackCpuMicrosecondsPerToken": ratio(
                old["stackCpuMicrosecondsPerToken"], new["stackCpuMicrosecondsPerToken"]
            ),
            "cpuMicrosecondsPerToken": {
                name: ratio(old["cpuMicrosecondsPerToken"][name], new["cpuMicrosecondsPerToken"][name])
                for name in PROCESSES
            },
            "bytesPerStoredEvent": ratio(old["bytesPerStoredEvent"], new["bytesPerStoredEvent"]),
        },
    }
