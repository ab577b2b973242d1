"""`bench.py --smoke`'s verdict: the smoke run proves each scenario still works end to end, at toy sizes, and
prints a one-line summary; it asserts nothing about speed (`make bench` and bench_targets.py judge that)."""

from __future__ import annotations


def check_smoke(results: dict) -> None:
    """The smoke run proves each scenario still works end to end; it asserts nothing about speed."""
    idle = results["idle"]
    assert idle["streamsOpen"] == idle["streamsRequested"], idle
    for row in results["handoff"] + results["handoffAuth"]:
        assert row["errors"] == 0 and row["completed"] > 0, row
    for row in results["throughput"]:
        assert row["errors"] == 0 and row["completed"] > 0, row
    for run in (run for commit in results["commit"] for run in commit["runs"]):
        assert run["errors"] == 0 and run["completed"] == run["streams"] and run["batches"] > 0, run
    upstream = results["upstream"]
    assert upstream["relay"]["errors"] == 0 and upstream["relay"]["completed"] > 0, upstream["relay"]
    for row in upstream["firstToken"]:
        assert all(row[model]["errors"] == 0 and row[model]["completed"] > 0 for model in ("demo", "fast")), row
    assert all(round_["tokens"] > 1 for round_ in results["real"]["direct"] + results["real"]["handoff"]), results[
        "real"
    ]
    for mode in ("on", "off"):
        cost = results["metrics"][mode]
        assert cost["handoff"]["errors"] == 0 and cost["handoff"]["completed"] > 0 and cost["throughputErrors"] == 0, (
            cost
        )
    for kind, row in results["continuation"].items():
        assert row["whole"] == row["streams"] and row["touched"] > 0, (kind, row)
    for row in results["cost"]["rows"]:
        for side in ("old", "new"):
            figures = row[side]
            assert figures["client"]["errors"] == 0 and figures["tokens"] > 0, (side, figures)
            assert figures["walBytesPerToken"] > 0 and figures["stackCpuMicrosecondsPerToken"] > 0, (side, figures)
            assert figures["bytesPerStoredEvent"] > 0, (side, figures)
    for row in results["ha"]["rows"]:
        for name in ("single", "pair"):
            assert row[name]["errors"] == 0 and row[name]["completed"] > 0 and row[name]["flush"]["flushes"] > 0, row
    relay = results["relay"]
    for side in ("old", "new"):
        figures = relay[side]
        assert figures["clients"]["errors"] == 0 and figures["clients"]["completed"] > 0, (side, figures)
        assert figures["relayedRequests"] > 0 and figures["stackCpuMicrosecondsPerCompletion"] > 0, (side, figures)
        assert figures["clients"]["contentTokensPerCompletion"] == results["plan"]["relay"]["tokens"], (side, figures)
        assert figures["posts"] > 0 and figures["apiCpuMicrosecondsPerPost"] > 0, (side, figures)
    cost, ha = results["cost"]["rows"][0], results["ha"]["rows"][0]
    print(
        f"bench smoke: cost per token {cost['new']['walBytesPerToken']:.0f} B of WAL, "
        f"{cost['new']['stackCpuMicrosecondsPerToken']:.0f} µs of stack CPU; hand-off p50 "
        f"{ha['single']['firstEventMilliseconds']['p50']:.1f} ms on one node, "
        f"{ha['pair']['firstEventMilliseconds']['p50']:.1f} ms on the Patroni pair; relayed first token "
        f"{relay['new']['firstTokenOverheadMilliseconds']:+.1f} ms over the stub's, "
        f"{relay['new']['stackCpuMicrosecondsPerCompletion']:.0f} µs of stack CPU per completion, "
        f"{relay['new']['apiCpuMicrosecondsPerPost']:.0f} µs of the API server's per POST"
    )
    print(
        f"bench smoke: idle {idle['streamsOpen']} streams at {idle['kibPerStream']:.1f} KiB each; "
        f"hand-off p50 {results['handoff'][0]['firstEventMilliseconds']['p50']:.1f} ms, "
        f"{results['handoffAuth'][0]['firstEventMilliseconds']['p50']:.1f} ms with a key; "
        f"{results['throughput'][0]['completionsPerSecond']:.0f} completions/s"
    )
