"""Scenario 8: what a failure mid-answer costs a client whose answer is continued: the time from the failure to the
next token reaching the client, and every stream still whole (all its tokens, a finish reason, no error event).

- Upstream cut: model `cut` has two servers (scripts/cut_upstream.py, both continuing by prefill). A drops every
  answer after `cutAfter` chunks of " a"; B never fails and answers " b". A stream that begins with " a" was cut,
  and its silence between chunk `cutAfter` and the next is the cost of the cut.
- Worker kill: the demo model on two workers; one is killed with SIGKILL mid-stream, and the rescue requeues its
  answers after the lease for the other to continue. A stream's longest silence (past five token delays: the
  streams of the surviving worker have none) is the cost of the kill."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_session import PORTS, Session, log
from bench_upstream import wait_for_port
from handoff_stack import ROOT, Stack
from sse_client import stream_events

CUT_PORTS = {" a": 28091, " b": 28093}


def continuation(plan: dict, session: Session) -> dict:
    return {"upstreamCut": upstream_cut(plan["cut"], session), "workerKill": worker_kill(plan["kill"], session)}


def read(model: str, tokens: int, index: int) -> dict:
    """One stream through Caddy: the gaps between its content chunks, its first word, and whether it ended whole."""
    body = {
        "model": model,
        "stream": True,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": f"continue {index}"}],
    }
    times, words, finish, error = [], [], None, None
    try:
        for at, chunk in stream_events(f"http://127.0.0.1:{PORTS.caddy}/v1/chat/completions", body):
            if "error" in chunk:
                error = chunk["error"].get("code")
            for choice in chunk.get("choices") or []:
                if choice.get("delta", {}).get("content"):
                    times.append(at)
                    words.append(choice["delta"]["content"])
                finish = choice.get("finish_reason") or finish
    except Exception as failure:  # noqa: BLE001 - a broken stream is a result here, not a crash of the bench
        error = repr(failure)
    gaps = [(b - a) * 1000 for a, b in zip(times, times[1:])]
    whole = error is None and finish is not None and len(times) == tokens
    return {"gaps": gaps, "first": words[0] if words else None, "whole": whole}


def streams(model: str, plan: dict, during=None) -> list[dict]:
    """`plan["streams"]` streams at once; `during` runs (in this thread) while they do."""
    results: list[dict] = [{}] * plan["streams"]

    def one(index: int) -> None:
        results[index] = read(model, plan["tokens"], index)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(plan["streams"])]
    for thread in threads:
        thread.start()
    if during:
        during()
    for thread in threads:
        thread.join(timeout=120)
    return results


def summary(rows: list[dict], touched: list[float]) -> dict:
    """The gaps of the streams a failure touched, p50 and p99, and how many of all the streams ended whole."""
    touched = sorted(touched)

    def pick(q: float) -> float | None:
        return touched[min(len(touched) - 1, int(len(touched) * q))] if touched else None

    return {
        "streams": len(rows),
        "touched": len(touched),
        "whole": sum(row.get("whole", False) for row in rows),
        "gapMilliseconds": {
            "p50": pick(0.5),
            "p99": pick(0.99),
            "mean": statistics.fmean(touched) if touched else None,
        },
    }


def catalogue(path: Path) -> dict[str, str]:
    """`cut` served by the failing stub A and the healthy B, both continuing by prefill."""
    upstreams = [
        {
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": "cut",
            "max_concurrent_requests": 512,
            "continuation": "prefill",
        }
        for port in CUT_PORTS.values()
    ]
    models = [{"name": "demo", "backend": "demo"}, {"name": "cut", "backend": "openai", "upstreams": upstreams}]
    path.write_text(json.dumps({"models": models}))
    return {"HANDOFF_MODELS_FILE": str(path)}


def upstream_cut(plan: dict, session: Session) -> dict:
    log(
        f"scenario 8: {plan['streams']} streams of {plan['tokens']} tokens, those on server A cut after {plan['cutAfter']}"
    )
    stubs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "cut_upstream.py"),
                "--port",
                str(port),
                "--cut-after",
                str(plan["cutAfter"] if word == " a" else 0),
                "--delay-ms",
                str(plan["delayMs"]),
                "--word",
                word,
            ]
        )
        for word, port in CUT_PORTS.items()
    ]
    try:
        for port in CUT_PORTS.values():
            wait_for_port(port)
        settings = catalogue(session.log_root / "models-cut.json")
        rows = session.run(True, lambda stack: streams("cut", plan), **settings)
        after = plan["cutAfter"]
        cut = [row["gaps"][after - 1] for row in rows if row["first"] == " a" and len(row["gaps"]) >= after]
        return {**summary(rows, cut), "delayMilliseconds": plan["delayMs"]}
    finally:
        for stub in stubs:
            stub.send_signal(signal.SIGTERM)
            stub.wait(timeout=10)


def worker_kill(plan: dict, session: Session) -> dict:
    log(
        f"scenario 8: {plan['streams']} demo streams, a worker killed after {plan['killAfter']} s, lease {plan['lease']} s"
    )
    worker = {"HANDOFF_DEMO_TOKEN_DELAY_MS": str(plan["delayMs"]), "HANDOFF_LEASE_SECONDS": str(plan["lease"])}

    def measure(stack: Stack) -> list[dict]:
        stack.start_worker(stack.commands["api"][1], worker, name="worker-b")
        time.sleep(1)  # its listener up before the streams start, so both workers claim some

        def kill() -> None:
            # The worker holding the most running tasks: either may have claimed them all.
            time.sleep(plan["killAfter"])
            holder = stack.sql(
                "SELECT worker_id FROM handoff_tasks WHERE status = 'running' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
            )
            victim = next((name for name in ("worker", "worker-b") if f"-{stack.pid(name)}-" in holder), "worker")
            stack.signal(victim, signal.SIGKILL).wait(timeout=10)

        return streams("demo", plan, during=kill)

    rows = session.run(True, measure, worker_settings=worker)
    touched = [max(row["gaps"]) for row in rows if row.get("gaps") and max(row["gaps"]) > 5 * plan["delayMs"]]
    return {**summary(rows, touched), "leaseSeconds": plan["lease"]}
