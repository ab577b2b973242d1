"""Turns the results of scripts/bench.py into BENCHMARKS.md and an SVG plot of latency against request rate: the
sections, their tables and prose, and the plot. What passes and what fails is bench_targets.py's."""

from __future__ import annotations

from pathlib import Path

from bench_merge import caption, hardware, note, targets_note
from bench_report_cost import cost_section, ha_section
from bench_report_relay import relay_section
from bench_targets import (
    AUTH_BUDGET_MS,
    auth_cost,
    by_rate,
    fmt,
    median,
    metrics_cost,
    targets,
    upstream_added,
    upstream_targets,
)


def metrics_section(results: dict) -> list[str]:
    cost = metrics_cost(results)
    if cost is None:
        return []
    plan = results["plan"]["metrics"]
    lines = [
        "## What metrics cost",
        "",
        *note(results, "metrics"),
        "One stack; its API server, worker and SSE replicas restart with `HANDOFF_METRICS` on or off before each round",
        f"({plan['rounds']} rounds per mode, ABBA). Each round: the hand-off at {plan['rate']} requests/s, then "
        f"{plan['concurrency']} clients as fast as they go, {plan['seconds']} s each. Each figure is the median of the"
        " rounds'.",
        "",
        "| metrics | hand-off p50 (302) | p50 (first byte) | p99 (first byte) | completions/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode in ("off", "on"):
        row = results["metrics"][mode]
        handoff = row["handoff"]
        lines.append(
            f"| {mode} | {fmt(handoff['redirectMilliseconds']['p50'], 2)} ms | "
            f"{fmt(handoff['firstByteMilliseconds']['p50'], 2)} ms | {fmt(handoff['firstByteMilliseconds']['p99'], 2)} ms | "
            f"{fmt(row['completionsPerSecond'], 0)} |"
        )
    lines += ["", f"On against off: hand-off p50 {cost['handoff']:+.1%}, throughput {-cost['throughput']:+.1%}.", ""]
    return lines


HOPS = [
    ("transactionToCommit", "flush statement and commit"),
    ("commitToNotified", "commit → replica's NOTIFY"),
    ("notifiedToReceived", "NOTIFY → events in hand"),
    ("receivedToSent", "in hand → written"),
    ("sentToClient", "written → client (Caddy, client)"),
]


def commit_section(commit: list[dict], merged: list[str]) -> list[str]:
    """Scenario 2's section; `merged` its opening lines if the scenario was merged (bench_merge.note)."""
    lines = [
        "## 2. Commit-to-client latency",
        "",
        *merged,
        f"{commit[0]['streams']:,} streams at once, at several token rates per stream (the demo model's delay between",
        "tokens), read through Caddy and, at some rates, straight from the two replicas (which prices Caddy's hop). With",
        "`HANDOFF_BENCH_STAMPS=1` the SSE server writes a comment before each minibatch with the time its transaction",
        "began, when the replica's NOTIFY arrived, when it held the events and when it wrote them; the client adds when",
        "it parsed the batch, and after the run reads each row's commit time from Postgres (`track_commit_timestamp`,",
        "on in the bench cluster). All on one machine and one clock. *Commit → client* starts at the commit;",
        "*transaction → client* at the flush statement's start, which is what this table measured before 2026-11-30.",
        "The first seconds (the plan's warm-up), while all streams start, are left out. *Offered* is streams × token rate;",
        "*delivered* what arrived per second after the warm-up while every stream was still running (in brackets: over",
        "the whole run, start-up and the streams' ends included). Each row is the median of its runs, each on a fresh",
        "stack (`benchmarks/results.json` keeps every run). CPU is % of one core over the run.",
        "",
        "| tokens/s per stream | path | runs | offered events/s | delivered events/s | commit → client p50 / p90 / p99 / max (ms) | transaction → client p50 / p99 (ms) | CPU by process |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in commit:
        c, t = row["commitToClientMilliseconds"], row["transactionToClientMilliseconds"]
        lines.append(
            f"| {row['tokensPerSecond']} | {row['path']} | {len(row['runs'])} | "
            f"{row['streams'] * row['tokensPerSecond']:,} | {row['eventsPerSecond']:,.0f} ({row['wholeRunEventsPerSecond']:,.0f}) | "
            f"{fmt(c['p50'])} / {fmt(c['p90'])} / {fmt(c['p99'])} / {fmt(c['max'])} | {fmt(t['p50'])} / "
            f"{fmt(t['p99'])} | " + ", ".join(f"{k} {fmt(v, 0)}" for k, v in row["cpuPercent"].items()) + " |"
        )
    repeated = [row for row in commit if len(row["runs"]) > 1]
    if repeated:
        lines += [
            "",
            "Each run at the target rates, commit → client p50 / p99 (ms) at delivered events/s: "
            + "; ".join(
                f"{row['tokensPerSecond']} tokens/s: "
                + ", ".join(
                    f"{fmt(run['commitToClientMilliseconds']['p50'])} / {fmt(run['commitToClientMilliseconds']['p99'])} at "
                    f"{run['eventsPerSecond']:,.0f}"
                    for run in row["runs"]
                )
                for row in repeated
            )
            + ".",
        ]
    lines += [
        "",
        "### Where the time goes, hop by hop",
        "",
        "p50 / p99 of each leg (ms), over the batches that took it (a batch a stream read from the table on its own",
        "has no NOTIFY leg). *NOTIFY → events in hand* is 0 when the notification carried the events, the replica's",
        "fetch otherwise (`StreamAppendPayload`: a flush's rows travel whole up to 96 kB). *Flush* is the worker's",
        "statement from its start to its return (`handoff_stream_flush_duration_seconds`).",
        "",
        "| tokens/s per stream | path | " + " | ".join(label for _, label in HOPS) + " | flushes, mean flush (ms) |",
        "| --- | --- | " + " | ".join("---" for _ in HOPS) + " | --- |",
    ]
    for row in commit:
        hops, flush = row["hopsMilliseconds"], row.get("flush") or {}
        lines.append(
            f"| {row['tokensPerSecond']} | {row['path']} | "
            + " | ".join(f"{fmt(hops[key]['p50'], 2)} / {fmt(hops[key]['p99'], 1)}" for key, _ in HOPS)
            + f" | {fmt(flush.get('flushes') or 0, 0)}, {fmt(flush.get('meanMs') or 0)} |"
        )
    lines += [
        "",
        "Postgres's statements over the first run at each target rate (pg_stat_statements, the four with the most",
        "execution time; the replicas' fetch is `SELECT task_id, seq, events`, their poll `WITH watched`):",
        "",
        "| tokens/s per stream | statement | calls/s | mean (ms) | ms per second |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in repeated:
        for statement in row["runs"][0]["statements"][:4]:
            lines.append(
                f"| {row['tokensPerSecond']} | `{statement['query'][:60]}…` | {fmt(statement['callsPerSecond'])} | "
                f"{fmt(statement['meanMs'], 2)} | {fmt(statement['msPerSecond'])} |"
            )
    return lines + [""]


def write_report(results: dict, out: Path, svg: Path) -> None:
    m = results["machine"]
    where = f"{hardware(m)}; commit {m['commit']}, {m['date']}"
    idle, handoff, throughput, commit = results["idle"], results["handoff"], results["throughput"][0], results["commit"]
    pg = throughput["postgres"]
    cost = auth_cost(results)
    keyed = {row["rate"]: row for row in results.get("handoffAuth", [])}

    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {where}. Every stack runs from release binaries with its own Postgres 15",
        f"cluster, Caddy {m.get('caddy', '2.6')} in front and two SSE replicas; the demo model runs with zero token delay. The figures",
        "below are one `make bench`"
        + (", but for those of scenarios measured later, as their sections say" if results.get("merged") else "")
        + "; `benchmarks/results.json` holds every number.",
        "",
        "## Against the targets",
        "",
        *targets_note(results),
        "| target | measured | |",
        "| --- | --- | --- |",
        *targets(results),
        "",
        "## 1. Hand-off latency (open loop)",
        "",
        *note(results, "handoff"),
        "POST through Caddy → 302 → GET through Caddy, 16-token replies, requests sent at a fixed rate and timed from",
        "the moment each was due, each on a new connection. *302* is the API's answer (its enqueue commit included);",
        "*first byte* the stream's response head, sent once the SSE replica has read the task from Postgres; *first",
        "event* its first `data:` line, which waits for the worker to claim the task and commit its first minibatch.",
        "",
        "Each rate runs on one stack in both auth modes: *off* is an API started with `HANDOFF_AUTH=off`; *key* a second",
        "API process on the same database, worker and replicas (with a Caddy of its own) started with",
        "`HANDOFF_AUTH=required`, every POST carrying an API key whose request and token limits are set but never",
        "reached, so each request is looked up, checked and reserves its tokens. The stream's GET carries no key: the",
        "token in the Location opens it, as a browser's `EventSource` does. The modes alternate in rounds of "
        f"{fmt(handoff[0]['duration'] / handoff[0].get('rounds', 1), 0)} s",
        f"(off, key, key, off, ...; {handoff[0].get('rounds', 1)} rounds per mode and rate), so a drift of the VM's "
        "speed weighs on both modes; each",
        "figure is the median of the rounds' (with two, their mean), *max* the largest, *completed* their sum.",
        "",
        "| requests/s | auth | completed | errors | 302 p50 / p99 (ms) | first byte p50 / p90 / p99 / max (ms) | first event p50 / p99 / max (ms) | [DONE] p50 / p99 (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in (row for off in handoff for row in (off, keyed.get(off["rate"])) if row):
        r, b, e, d = (
            row["redirectMilliseconds"],
            row["firstByteMilliseconds"],
            row["firstEventMilliseconds"],
            row["doneMilliseconds"],
        )
        lines.append(
            f"| {fmt(row['rate'], 0)} | {'key' if row.get('auth') == 'required' else 'off'} | {row['completed']} | "
            f"{row['errors']} | {fmt(r['p50'])} / {fmt(r['p99'])} | "
            f"{fmt(b['p50'])} / {fmt(b['p90'])} / {fmt(b['p99'])} / {fmt(b['max'])} | "
            f"{fmt(e['p50'])} / {fmt(e['p99'])} / {fmt(e['max'])} | {fmt(d['p50'])} / {fmt(d['p99'])} |"
        )
    if cost:
        lines += [
            "",
            "What the key added, p50 with it minus without: first byte (the hand-off) "
            + ", ".join(f"{c['firstByteMilliseconds']:+.2f} ms at {fmt(rate, 0)}/s" for rate, c in cost.items())
            + "; 302 "
            + ", ".join(f"{c['redirectMilliseconds']:+.2f} ms" for c in cost.values())
            + f". Budget ≤ {AUTH_BUDGET_MS} ms on the hand-off p50, no keyed errors: "
            + by_rate({rate: c["ok"] for rate, c in cost.items()})
            + ".",
        ]
    lines += [
        "",
        f"![Hand-off latency against request rate]({svg.relative_to(out.parent)})",
        "",
        *commit_section(commit, note(results, "commit")),
        "## 3. Idle streams on one replica",
        "",
        *note(results, "idle"),
        f"{idle['streamsRequested']:,} tasks queued with no worker running, so every stream stays open and idle;",
        f"{idle['clientProcesses']} client processes connect straight to one replica (not through Caddy, which would",
        "spend two descriptors per stream), each from its own source address in 127.0.0.0/8.",
        "",
        "| streams open | replica RSS before | with streams | per stream | CPU while idle | keepalive pings received |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {idle['streamsOpen']:,} | {idle['rssBeforeKiB'] / 1024:.1f} MiB | {idle['rssLoadedKiB'] / 1024:.1f} MiB | "
        f"{fmt(idle['kibPerStream'])} KiB | {fmt(idle['idleCPUPercent'], 2)} % of a core over {fmt(idle['holdSeconds'], 0)} s | "
        f"{idle['pingsReceived']:,} |",
        "",
        "## 4 and 5. Throughput and Postgres footprint",
        "",
        *note(results, "throughput"),
        f"{throughput['concurrency']} closed-loop clients through Caddy for {fmt(throughput['duration'], 0)} s, "
        f"{throughput['tokens']}-token replies.",
        "",
        "| completions/s | errors | completion p50 / p99 (ms) | SSE events/s by replica |",
        "| --- | --- | --- | --- |",
        f"| {fmt(throughput['completionsPerSecond'], 0)} | {throughput['errors']} | "
        f"{fmt(throughput['completionMilliseconds']['p50'])} / {fmt(throughput['completionMilliseconds']['p99'])} | "
        + ", ".join(f"{k}: {fmt(v, 0)}" for k, v in sorted(throughput["eventsPerSecondByReplica"].items()))
        + " |",
        "",
        "| Postgres | value |",
        "| --- | --- |",
        f"| peak connections by process | {', '.join(f'{k} {v}' for k, v in sorted(pg['peak_connections'].items()))} |",
        f"| transactions committed | {pg['commits']:,} |",
        f"| minibatch rows written / events in them | {pg['stream_rows']:,} / {pg['events']:,} "
        f"({fmt(pg['events_per_minibatch'])} events per row) |",
        f"| transactions per minibatch row (all processes, reads included) | {fmt(pg['commits_per_minibatch'], 2)} |",
        "",
        "CPU during the run (% of one core): "
        + ", ".join(f"{k} {fmt(v)}" for k, v in throughput["cpuPercent"].items())
        + ".",
        "",
    ]
    lines += upstream_section(results["upstream"], results["real"], note(results, "upstream") + real_note(results))
    lines += metrics_section(results)
    lines += cost_section(results) + ha_section(results) + relay_section(results)
    lines += [
        "Reproduce: `make bench` (about fifteen minutes; the cold release build, llama-server's first build, the",
        "baseline's release build for the cost per token and LiteLLM's install for the relay come first).",
        "",
    ]
    out.write_text("\n".join(lines))
    svg.write_text(plot(handoff, caption(results, where)))


def real_note(results: dict) -> list[str]:
    """Section 6's opening lines if the real model's scenario was merged: its figures are the section's last."""
    return note(results, "real", "The real model's figures (the target table's last row and the last paragraph)")


def upstream_section(upstream: dict, real: dict, merged: list[str]) -> list[str]:
    """Section 6 (the upstream and real scenarios); `merged` its opening lines if either was merged."""
    direct, relay = upstream["direct"], upstream["relay"]
    added = upstream_added(upstream)
    lines = [
        "## 6. Relaying an upstream model",
        "",
        *merged,
        "A zero-delay OpenAI-compatible stub (`scripts/fast_upstream.py`, OpenAI's chunk shape) as the catalogue model",
        "`fast`, against the built-in `demo` model at zero token delay, through the whole stack, open loop. *First",
        "token* is the model's first chunk at the client, timed from the POST.",
        "",
        "| requests/s | `demo` first token p50 / p99 (ms) | `fast` (stub) first token p50 / p99 (ms) | added p50 |",
        "| --- | --- | --- | --- |",
    ]
    for row in upstream["firstToken"]:
        demo, fast = row["demo"]["firstTokenMilliseconds"], row["fast"]["firstTokenMilliseconds"]
        lines.append(
            f"| {row['rate']} | {fmt(demo['p50'], 2)} / {fmt(demo['p99'], 2)} | {fmt(fast['p50'], 2)} / "
            f"{fmt(fast['p99'], 2)} | {added[row['rate']]:+.2f} ms |"
        )
    lines += [
        "",
        f"The stub read directly, one request at a time: first chunk p50 {fmt(direct['p50'], 2)} ms, p99 "
        f"{fmt(direct['p99'], 2)} ms ({direct['count']} requests).",
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
        *upstream_targets(upstream, real),
        "",
        "Relay run CPU (% of one core): " + ", ".join(f"{k} {fmt(v)}" for k, v in relay["cpuPercent"].items()) + ".",
        "",
        f"The real model is llama.cpp's `llama-server` with SmolLM2-135M (Q4_1) on the CPU ({real.get('threads', 2)} decode "
        "thread: the other core is left to Handoff, as a model server on its own host would), greedy, `ignore_eos`, "
        f"{real['direct'][0]['tokens']} tokens per reply, read directly and through Caddy's `/v1` alternately. First "
        f"token: direct {fmt(median(real['direct'], 'firstTokenMs'))} ms, through Handoff "
        f"{fmt(median(real['handoff'], 'firstTokenMs'))} ms (medians).",
        "",
    ]
    return lines


def plot(rows: list[dict], caption: str) -> str:
    """p50 and p99 of first byte and first event against request rate, on log-free linear axes."""
    width, height, left, right, top, bottom = 720, 420, 70, 20, 40, 70
    rates = [row["rate"] for row in rows]
    series = [
        ("first byte p50", "firstByteMilliseconds", "p50", "#1f77b4", ""),
        ("first byte p99", "firstByteMilliseconds", "p99", "#1f77b4", "6 4"),
        ("first event p50", "firstEventMilliseconds", "p50", "#d62728", ""),
        ("first event p99", "firstEventMilliseconds", "p99", "#d62728", "6 4"),
    ]
    highest = max(row[key][stat] for row in rows for _, key, stat, _, _ in series) or 1
    step = next(step for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000) if highest / step <= 5)
    top_value = step * (int(highest // step) + 1)
    x_max = max(rates) * 1.05

    def x(rate: float) -> float:
        return left + (width - left - right) * rate / x_max

    def y(ms: float) -> float:
        return height - bottom - (height - top - bottom) * ms / top_value

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">Hand-off latency against request rate</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
    ]
    for i in range(int(top_value // step) + 1):
        value = step * i
        parts.append(f'<text x="{left - 8}" y="{y(value) + 4}" text-anchor="end">{value:.0f}</text>')
        parts.append(f'<line x1="{left}" y1="{y(value)}" x2="{width - right}" y2="{y(value)}" stroke="#ddd"/>')
    for rate in rates:
        parts.append(f'<text x="{x(rate)}" y="{height - bottom + 18}" text-anchor="middle">{rate:.0f}</text>')
    parts.append(
        f'<text x="{(width + left) / 2}" y="{height - bottom + 38}" text-anchor="middle">requests per second (open loop)</text>'
    )
    parts.append(
        f'<text x="18" y="{(height + top - bottom) / 2}" transform="rotate(-90 18 {(height + top - bottom) / 2})" '
        'text-anchor="middle">milliseconds after the POST was due</text>'
    )
    for index, (label, key, stat, colour, dash) in enumerate(series):
        points = " ".join(f"{x(row['rate']):.1f},{y(row[key][stat]):.1f}" for row in rows)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>'
        )
        for row in rows:
            parts.append(f'<circle cx="{x(row["rate"]):.1f}" cy="{y(row[key][stat]):.1f}" r="3" fill="{colour}"/>')
        ly = top + 10 + index * 16
        parts.append(
            f'<line x1="{left + 20}" y1="{ly}" x2="{left + 50}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="{dash}"/>'
        )
        parts.append(f'<text x="{left + 56}" y="{ly + 4}">{label}</text>')
    parts.append(
        f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle" font-size="10" fill="#555">{caption}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
