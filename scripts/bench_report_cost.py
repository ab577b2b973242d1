"""BENCHMARKS.md's sections on what things cost against a reference in the same run: a streamed token against the
baseline commit's binaries (bench_cost.py, issue 24) and synchronous replication against a single node
(bench_ha.py, issue 23). bench_report.py puts them in the report."""

from __future__ import annotations

from bench_cost import PROCESSES
from bench_merge import note
from bench_targets import fmt, times


def cost_section(results: dict) -> list[str]:
    cost = results.get("cost")
    if not cost:
        return []
    plan = results["plan"]["cost"]
    lines = [
        "## Cost per token",
        "",
        *note(results, "cost"),
        "What a streamed token costs the stack: this commit's release binaries (*new*) against those of "
        f"{cost['baseline'][:7]} (*old*,",
        "the commit before issue 24), in one run on one machine. The bench's Postgres and one Caddy stay up; each round",
        "starts the API server, a worker and two SSE replicas from one binary set on a fresh database, opens "
        f"{cost['streams']:,} streams",
        "at once through Caddy (`handoff-bench commit-latency`; the demo model at `HANDOFF_DEMO_TOKEN_DELAY_MS` = 1000 /",
        f"rate) and measures {plan['seconds']:g} s from {plan['warmup']:g} s after they opened, while every stream "
        "runs. The sets alternate ABBA at",
        f"each rate ({plan['rounds']} round{'s' if plan['rounds'] != 1 else ''} each); each figure is the median of "
        "a set's rounds. *Tokens* are the events the replicas",
        "wrote to clients (`handoff_sse_events_sent_total`); *WAL* is `pg_current_wal_lsn()`'s advance (a `CHECKPOINT`",
        "before each round); *CPU* is utime + stime from /proc, Postgres's being the cluster's postmaster with every",
        "process it forked or reaped, the client's left out; *disk* is the growth of",
        "`pg_total_relation_size('handoff_stream')` (heap, indexes, TOAST) per event the worker stored",
        "(`handoff_stream_events_written_total`).",
        "",
        "| tokens/s per stream | delivered tokens/s, old / new | WAL bytes per token, old / new (new ÷ old) | stack CPU µs per token, old / new (new ÷ old) | bytes per stored event, old / new (new ÷ old) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in cost["rows"]:
        old, new, ratio = row["old"], row["new"], row["ratio"]
        lines.append(
            f"| {row['tokensPerSecondPerStream']} | {old['tokensPerSecond']:,.0f} / {new['tokensPerSecond']:,.0f} | "
            + " | ".join(
                f"{fmt(old[key], 0)} / {fmt(new[key], 0)} ({times(ratio[key])})"
                for key in ("walBytesPerToken", "stackCpuMicrosecondsPerToken", "bytesPerStoredEvent")
            )
            + " |"
        )
    lines += [
        "",
        "CPU µs per token by process, old / new (new ÷ old):",
        "",
        "| tokens/s per stream | " + " | ".join(PROCESSES) + " |",
        "| --- | " + " | ".join("---" for _ in PROCESSES) + " |",
    ]
    for row in cost["rows"]:
        old, new = row["old"]["cpuMicrosecondsPerToken"], row["new"]["cpuMicrosecondsPerToken"]
        lines.append(
            f"| {row['tokensPerSecondPerStream']} | "
            + " | ".join(
                f"{fmt(old[name])} / {fmt(new[name])} ({times(row['ratio']['cpuMicrosecondsPerToken'][name])})"
                for name in PROCESSES
            )
            + " |"
        )
    if cost.get("sameBinaries"):
        lines += ["", "Old and new were the same binaries in this run: the ratios show the method's noise."]
    lines += [
        "",
        "Alone: `.venv/bin/python scripts/bench.py --only cost` (prints its JSON; `--baseline-bin-dir DIR` for other old",
        "binaries, else scripts/bench-baseline.sh builds the baseline's once into `~/.cache/handoff/bench-baseline/`).",
        "",
    ]
    return lines


def ha_section(results: dict) -> list[str]:
    ha = results.get("ha")
    if not ha:
        return []
    plan = results["plan"]["ha"]
    lines = [
        "## What synchronous replication costs",
        "",
        *note(results, "ha"),
        "The hand-off (as in §1: POST → 302 → first event, 16-token replies, open loop) on a stack whose Postgres is a",
        "Patroni pair as `make run-ha` runs it (`deploy/ha/`: `synchronous_mode`, every commit waits for the standby,",
        f"here `{ha['synchronousStandbyNames']}`; reached through HAProxy), against the same on a stack on the bench's "
        "single node. Both",
        f"stacks stay up; rounds of {plan['seconds']:g} s alternate between them ABBA ({plan['rounds']} per "
        "database and rate). Hand-off figures are the",
        "medians of the rounds'. *Flush* is the worker's minibatch statement with its commit",
        "(`handoff_stream_flush_duration_seconds`, pooled over the rounds): the mean is exact, p50 and p99 are",
        "interpolated within the histogram's buckets (1, 2, 5, 10, 25, 50 ms, ...).",
        "",
        "| requests/s | Postgres | completed | errors | 302 p50 / p99 (ms) | first event p50 / p99 (ms) | flushes | flush p50 / p99 / mean (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in ha["rows"]:
        for name, label in (("single", "single node"), ("pair", "Patroni pair")):
            r, e, f = row[name]["redirectMilliseconds"], row[name]["firstEventMilliseconds"], row[name]["flush"]
            lines.append(
                f"| {row['rate']} | {label} | {row[name]['completed']} | {row[name]['errors']} | "
                f"{fmt(r['p50'], 2)} / {fmt(r['p99'], 2)} | {fmt(e['p50'], 2)} / {fmt(e['p99'], 2)} | {f['flushes']} | "
                + " / ".join(fmt(f[key], 2) if f[key] is not None else "—" for key in ("p50Ms", "p99Ms", "meanMs"))
                + " |"
            )
    lines += [
        "",
        "Pair ÷ single node: "
        + "; ".join(
            f"at {row['rate']}/s 302 p50 {times(row['ratio']['redirectMilliseconds.p50'])}, p99 "
            f"{times(row['ratio']['redirectMilliseconds.p99'])}, first event p50 "
            f"{times(row['ratio']['firstEventMilliseconds.p50'])}, p99 {times(row['ratio']['firstEventMilliseconds.p99'])}, "
            f"mean flush {times(row['ratio'].get('flush.meanMs'))}"
            for row in ha["rows"]
        )
        + ".",
        "",
        "Alone: `.venv/bin/python scripts/bench.py --only ha` (prints its JSON). What the figures mean for sizing:",
        "docs/deploy.md, §6.",
        "",
    ]
    return lines
