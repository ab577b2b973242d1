"""What a scenario measures besides what `handoff-bench` reports, read from the stack while or after it runs:
Postgres connections per process, CPU per process, Postgres's statements by time, the worker's flushes and the
database's commit and row counters."""

from __future__ import annotations

import http.client
import os
import re
import threading
import time
from pathlib import Path

from bench_session import ADMIN_URL
from handoff_stack import Stack, psql


class ConnectionSampler:
    """Samples pg_stat_activity while a scenario runs: the most connections each process held."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.peak: dict[str, int] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stopping.wait(0.5):
            for name, count in self.stack.connection_counts().items():
                self.peak[name] = max(self.peak.get(name, 0), count)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()


class CPUSampler:
    """Where the CPU went while a scenario ran, in % of one core: each stack process, Postgres (all its backends
    together) and the load generator. On 2 shared cores this is the profile that says what saturates."""

    TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, stack: Stack):
        self.stack = stack

    @staticmethod
    def ticks(pid: int | str, reaped: bool = False) -> int:
        """The process's CPU so far, in clock ticks (all its threads); with `reaped`, its children's that it waited
        for too."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        # utime + stime (+ cutime + cstime)
        return int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)

    @staticmethod
    def tree_ticks(root: int) -> int:
        """The CPU so far, in clock ticks, of a process and every descendant that still runs, each with the children
        it has reaped (an exited child's CPU moves to its parent's cutime): a Postgres cluster from its postmaster
        (backends, background workers), LiteLLM from its launcher."""
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

    @staticmethod
    def comm(pid: str) -> str:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return ""

    def snapshot(self) -> dict[str, int]:
        shot = {name: self.ticks(process.pid) for name, process in self.stack.processes.items()}
        shot["postgres"] = sum(
            self.ticks(pid) for pid in os.listdir("/proc") if pid.isdigit() and self.comm(pid) == "postgres"
        )
        return shot

    def __enter__(self):
        self.start, self.before, self.children = time.monotonic(), self.snapshot(), os.times()
        return self

    def __exit__(self, *exc) -> None:
        seconds = time.monotonic() - self.start
        after, children = self.snapshot(), os.times()
        share = {name: 100 * (after[name] - self.before.get(name, 0)) / self.TICKS / seconds for name in after}
        # The load generator is the only child reaped meanwhile.
        share["handoff-bench"] = (
            100
            * (
                (children.children_user - self.children.children_user)
                + (children.children_system - self.children.children_system)
            )
            / seconds
        )
        self.percent = {name: round(value, 1) for name, value in sorted(share.items(), key=lambda kv: -kv[1])}


class StatementProfile:
    """Where Postgres's time went while a scenario ran: the statements of the stack's database by total execution
    time (pg_stat_statements, which `make bench` loads into its cluster), with calls and rows."""

    def __init__(self, stack: Stack, top: int = 6):
        self.stack, self.top = stack, top

    def __enter__(self):
        psql(ADMIN_URL, "SELECT pg_stat_statements_reset()")
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        seconds = time.monotonic() - self.start
        out = psql(
            ADMIN_URL,
            f"""
            SELECT calls, rows, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3),
                left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{self.stack.database}')
            ORDER BY total_exec_time DESC LIMIT {self.top}""",
        )
        self.statements = []
        for line in out.splitlines():
            calls, rows, total, mean, query = line.split("|", 4)
            self.statements.append(
                {
                    "query": query,
                    "callsPerSecond": round(int(calls) / seconds, 1),
                    "rowsPerSecond": round(int(rows) / seconds, 1),
                    "msPerSecond": round(float(total) / seconds, 1),
                    "meanMs": float(mean),
                }
            )


def scrape(port: int) -> dict[str, float]:
    """One process's /metrics: each series (`name{labels}`) and its value."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        lines = connection.getresponse().read().decode().splitlines()
    finally:
        connection.close()
    return {
        series: float(value) for series, _, value in (line.rpartition(" ") for line in lines if line[:1] not in "#")
    }


def metric_total(series: dict[str, float], name: str) -> float:
    """A metric's value summed over its labels (0 when absent)."""
    return sum(value for key, value in series.items() if key.partition("{")[0] == name)


def histogram(series: dict[str, float], name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts by upper bound (+inf the last), summed over its other labels."""
    buckets: dict[float, float] = {}
    for key, value in series.items():
        if key.partition("{")[0] == f"{name}_bucket" and (bound := re.search(r'le="([^"]+)"', key)):
            le = float(bound.group(1))  # "+Inf" parses as inf
            buckets[le] = buckets.get(le, 0) + value
    return dict(sorted(buckets.items()))


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of cumulative `buckets`, interpolated linearly within its bucket as Prometheus's
    histogram_quantile does (the highest finite bound when it falls in the +inf bucket); None for no observations."""
    total = buckets.get(float("inf"), 0)
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets.items():
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 1)
        lower, below = le, count
    return lower


FLUSH = "handoff_stream_flush_duration_seconds"


def flush_histogram(stack: Stack) -> dict:
    """The worker's flush histogram so far, from its /metrics: count, total seconds (tx start to return) and
    cumulative buckets (by their `le` label)."""
    series = scrape(stack.worker_ports["worker"])
    return {
        "count": metric_total(series, f"{FLUSH}_count"),
        "seconds": metric_total(series, f"{FLUSH}_sum"),
        "buckets": {"+Inf" if le == float("inf") else f"{le:g}": n for le, n in histogram(series, FLUSH).items()},
    }


def flush_timing(stack: Stack) -> dict:
    """The worker's flushes so far: how many, and their mean duration (tx start to return)."""
    flushes = flush_histogram(stack)
    count, total = flushes["count"], flushes["seconds"]
    return {"flushes": int(count), "meanMs": 1000 * total / count if count else None}


def database_counters(stack: Stack) -> dict:
    """The database's commits so far, and the minibatch rows in it with the events they hold."""
    commits = int(psql(ADMIN_URL, f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{stack.database}'"))
    rows = stack.sql("SELECT count(*), coalesce(sum(event_count), 0) FROM handoff_stream").split("|")
    return {"commits": commits, "stream_rows": int(rows[0]), "events": int(rows[1])}
