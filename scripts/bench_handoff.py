"""The hand-off scenarios that compare two settings of one stack, alternating ABBA so a drift of the VM's speed
weighs on both: scenario 1 keyless against keyed (`HANDOFF_AUTH=off` against a second API process with
`HANDOFF_AUTH=required` and a key whose limits are never reached), and the metrics scenario, every process's
metrics on against off (`HANDOFF_METRICS`)."""

from __future__ import annotations

import http.client
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

from bench_session import PORTS, Session, bench, log
from handoff_stack import Stack, healthy, post_one_token, wait_until

# The keyed twin of the hand-off scenario: a second API process and a Caddy of its own in front of it.
AUTH_CADDY_PORT = 28084
AUTH_API_PORT = 28085
# Far above anything the scenario sends (its whole keyed side is ~16,000 requests of ~30 estimated tokens), yet
# set: the key goes through the same limit check and reservation as a real one, and never gets a 429.
KEY_LIMITS = {"--requests-per-minute": 1_000_000, "--tokens-per-minute": 100_000_000}


def handoff_latency(plan: dict, session: Session) -> dict:
    """Scenario 1: the hand-off at each of the plan's rates, keyless and keyed; per mode one combined row per rate,
    and every round under `rounds`."""

    def measure(stack: Stack) -> dict:
        """Both modes on one stack: one database, worker and pair of SSE replicas; only the API process (and the
        Caddy in front of it) differs. Both APIs stay up the whole time, so switching mode costs no restart and
        no cold start, and the modes alternate at each rate in rounds of `latency_seconds` each, in the order
        off, on, on, off, ... (ABBA): on a shared 2-core VM, whose speed drifts over minutes, a drift then
        weighs on both modes alike, where one block per mode would hand it all to one of them."""
        key = start_keyed_twin(stack, session.bin_dir)
        modes = {"off": ["--port", str(PORTS.caddy)], "required": ["--port", str(AUTH_CADDY_PORT), "--api-key", key]}
        for mode, args in modes.items():
            # Neither API's first round pays for its connection pool's set-up; a keyed error here is a broken key.
            warm = bench(session.bin_dir, "handoff", *args, "--rate", "50", "--duration", "1")
            if warm["errors"]:
                raise RuntimeError(
                    f"warm-up with auth {mode}: {warm['errors']} of {warm['completed'] + warm['errors']} failed"
                )
        rounds = []
        for rate, round_, mode in abba(plan["rates"], plan["auth_rounds"], "off", "required"):
            log(
                f"scenario 1: hand-off latency at {rate} requests/s for {plan['latency_seconds']} s, "
                f"auth {mode} (round {round_ + 1} of {plan['auth_rounds']})"
            )
            row = bench(
                session.bin_dir,
                "handoff",
                *modes[mode],
                "--rate",
                str(rate),
                "--duration",
                str(plan["latency_seconds"]),
            )
            rounds.append({**row, "auth": mode, "round": round_})
        return {
            mode: [
                combine([row for row in rounds if row["auth"] == mode and row["rate"] == rate])
                for rate in plan["rates"]
            ]
            for mode in modes
        } | {"rounds": rounds}

    return session.run(True, measure)


def metrics_cost(plan: dict, session: Session) -> dict:
    """Scenario 6: the hand-off at `rate` (below saturation, where a cost would show rather than drown in queueing) and
    the throughput of `concurrency` clients (the median of the rounds'), with every process's metrics on and off. One stack, whose API server, worker and SSE replicas restart with `HANDOFF_METRICS` flipped before
    each round, in the order on, off, off, on, ... (ABBA, as in scenario 1: a drift of the VM's speed weighs on both)."""

    def measure(stack: Stack) -> dict:
        rounds = []
        for rate, round_, mode in abba([plan["rate"]], plan["rounds"], "on", "off"):
            switch_metrics(stack, mode)
            bench(session.bin_dir, "handoff", "--port", str(PORTS.caddy), "--rate", "50", "--duration", "1")  # warm-up
            log(
                f"scenario 6: metrics {mode}, round {round_ + 1} of {plan['rounds']}: hand-off at {rate}/s, "
                f"then {plan['concurrency']} clients, {plan['seconds']} s each"
            )
            handoff = bench(
                session.bin_dir,
                "handoff",
                "--port",
                str(PORTS.caddy),
                "--rate",
                str(rate),
                "--duration",
                str(plan["seconds"]),
            )
            throughput = bench(
                session.bin_dir,
                "throughput",
                "--port",
                str(PORTS.caddy),
                "--concurrency",
                str(plan["concurrency"]),
                "--duration",
                str(plan["seconds"]),
            )
            rounds.append({"metrics": mode, "round": round_, "handoff": handoff, "throughput": throughput})
        return {
            mode: {
                "handoff": combine([r["handoff"] for r in rounds if r["metrics"] == mode]),
                "completionsPerSecond": statistics.median(
                    r["throughput"]["completionsPerSecond"] for r in rounds if r["metrics"] == mode
                ),
                "throughputErrors": sum(r["throughput"]["errors"] for r in rounds if r["metrics"] == mode),
            }
            for mode in ("on", "off")
        } | {"rounds": rounds}

    return session.run(True, measure)


def abba(rates: list, rounds: int, first: str, second: str) -> Iterator[tuple[Any, int, str]]:
    """(rate, round, side) for each rate's `rounds` rounds, the two sides in the order first, second, second, first,
    ... (ABBA): on a shared VM whose speed drifts over minutes, a drift then weighs on both sides alike."""
    for rate in rates:
        for round_ in range(rounds):
            for side in (first, second) if round_ % 2 == 0 else (second, first):
                yield rate, round_, side


def switch_metrics(stack: Stack, mode: str) -> None:
    """Restarts the API server, the worker and the SSE replicas with `HANDOFF_METRICS=mode` (Caddy and Postgres stay),
    and waits until streams reach every replica again."""
    names = ["api", "worker", *(f"sse-{port}" for port in PORTS.sse)]
    for name in names:
        stack.signal(name, signal.SIGTERM)
    for name in names:
        stack.restart(name, {"HANDOFF_METRICS": mode})
    stack.wait_healthy(time.monotonic() + 60)
    stack.wait_routed(time.monotonic() + 60)
    status = http.client.HTTPConnection("127.0.0.1", PORTS.api, timeout=5)
    try:
        status.request("GET", "/metrics")
        answered = status.getresponse().status
    finally:
        status.close()
    if answered != (200 if mode == "on" else 404):
        raise RuntimeError(f"/metrics answered {answered} with HANDOFF_METRICS={mode}")


def start_keyed_twin(stack: Stack, bin_dir: Path) -> str:
    """Next to the stack's keyless API: a key from the admin command (the API has migrated the database by now),
    a second API process on the same database with `HANDOFF_AUTH=required`, and a second Caddy in front of it,
    routing to the same SSE replicas. Returns the key."""
    api_argv, api_env = stack.commands["api"]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_") and k != "DATABASE_URL"}
    created = subprocess.run(
        [
            str(bin_dir / "handoff-api"),
            "keys",
            "create",
            "--name",
            "bench",
            *(str(part) for option in KEY_LIMITS.items() for part in option),
        ],
        env={**inherited, **api_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if created.returncode != 0 or not created.stdout.strip():
        raise RuntimeError(f"handoff-api keys create failed ({created.returncode}): {created.stderr.strip()}")
    key = created.stdout.strip().splitlines()[-1].strip()

    stack.start("api-auth", api_argv, {**api_env, "HANDOFF_API_PORT": str(AUTH_API_PORT), "HANDOFF_AUTH": "required"})
    caddy_argv, caddy_env = stack.commands["caddy"]
    stack.start(
        "caddy-auth",
        caddy_argv,
        {
            **caddy_env,
            "HANDOFF_CADDY_PORT": str(AUTH_CADDY_PORT),
            "HANDOFF_API_UPSTREAM": f"127.0.0.1:{AUTH_API_PORT}",
            "XDG_DATA_HOME": str(stack.log_dir / "xdg-data-auth"),
            "XDG_CONFIG_HOME": str(stack.log_dir / "xdg-config-auth"),
        },
    )
    deadline = time.monotonic() + 60
    wait_until(f"/healthz on port {AUTH_API_PORT}", stack, deadline, lambda: healthy(AUTH_API_PORT))
    wait_until(f"Caddy on port {AUTH_CADDY_PORT}", stack, deadline, lambda: handoff_status(AUTH_CADDY_PORT) != 502)
    # Never keyless against keyless: the keyed side must turn a request without the key away.
    if (status := handoff_status(AUTH_CADDY_PORT)) != 401:
        raise RuntimeError(f"a keyless POST to the API started with HANDOFF_AUTH=required answered {status}, not 401")
    return key


def handoff_status(port: int) -> int:
    """The status of a keyless one-token hand-off POST."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        return post_one_token(connection).status
    finally:
        connection.close()


def combine(rounds: list[dict]) -> dict:
    """One mode's rounds at one rate as one row of the same shape: counts added up; each percentile the median of
    the rounds' (with two rounds their mean; the rounds are not pooled, handoff-bench gives summaries only);
    max the largest."""
    row = {key: value for key, value in rounds[0].items() if key != "round"}
    row |= {
        "rounds": len(rounds),
        "duration": sum(r["duration"] for r in rounds),
        "completed": sum(r["completed"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
    }
    for key in [key for key in row if key.endswith("Milliseconds")]:
        summaries = [r[key] for r in rounds]
        row[key] = {
            "count": sum(s["count"] for s in summaries),
            **{p: statistics.median(float(s[p]) for s in summaries) for p in ("p50", "p90", "p99")},
            "max": max(float(s["max"]) for s in summaries),
        }
    return row


def median_of(runs: list[dict]):
    """One run's shape, each number the median of the runs' (a list, such as the statement profile, the first run's)."""
    first = runs[0]
    if isinstance(first, bool) or not isinstance(first, (int, float, dict)):
        return first
    if isinstance(first, dict):
        return {key: median_of([run[key] for run in runs if key in run]) for key in first}
    return statistics.median(runs)
