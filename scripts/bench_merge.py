"""`bench.py --only ... --merge`: a later partial run's scenarios put into a full run's results, and how the report
says so. `merge` replaces (or adds) each scenario's results and plan entries and records under results["merged"] where
and when it was measured; `note` and `targets_note` are the lines a section of BENCHMARKS.md opens with when its
scenario was merged, so no reader takes a later partial run for part of the full run."""

from __future__ import annotations

import subprocess

from handoff_stack import ROOT

# The keys of the results and of the plan each scenario writes, where they are not the scenario's own name.
RESULT_KEYS = {"handoff": ("handoff", "handoffAuth", "handoffRounds")}
PLAN_KEYS = {"handoff": ("rates", "latency_seconds", "auth_rounds")}
# The scenarios whose figures are rows of the "Against the targets" table (bench_targets.targets).
TARGETS = ("idle", "handoff", "commit", "throughput", "metrics", "continuation", "cost")
MACHINE = ("cores", "cpu", "memory_gib", "kernel", "caddy")


def source_commit() -> str:
    """HEAD's short hash, with "+dirty" if Sources/ has changes not committed (the binaries may hold them)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "--", "Sources") else "")


def merge(full: dict, partial: dict, scenarios: list[str], commit: str) -> dict:
    """`full` (a full run's results, changed in place and returned) with the results and plan entries of `partial`'s
    `scenarios` in place of its own, or added where it has none, each recorded under results["merged"] as measured at
    `commit` (source_commit() when the run began)."""
    stamp = {
        "commit": commit,
        "date": partial["machine"]["date"],
        "machine": partial["machine"],
        "command": f"python scripts/bench.py --only {','.join(scenarios)} --merge",
    }
    for scenario in scenarios:
        for key in RESULT_KEYS.get(scenario, (scenario,)):
            full[key] = partial[key]
        for key in PLAN_KEYS.get(scenario, (scenario,)):
            full["plan"][key] = partial["plan"][key]
        full.setdefault("merged", {})[scenario] = dict(stamp)
    return full


def hardware(machine: dict) -> str:
    """A machine's cores, memory and kernel, as the report's first line and the plot's caption name them."""
    return f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, Linux {machine['kernel']}"


def describe(machine: dict) -> str:
    """A machine as the report's first line names it, with its Caddy."""
    return f"{hardware(machine)}, Caddy {machine.get('caddy', '?')}"


def when(results: dict, scenario: str) -> str | None:
    """For a merged scenario, at which commit and on which date it was measured (and on which machine, if not the
    full run's); None for one of the full run."""
    entry = results.get("merged", {}).get(scenario)
    if not entry:
        return None
    full, mine = results["machine"], entry["machine"]
    elsewhere = any(full.get(key) != mine.get(key) for key in MACHINE)
    return f"at {entry['commit']} on {entry['date']}" + (f", on another machine: {describe(mine)}" if elsewhere else "")


def note(results: dict, scenario: str, subject: str = "") -> list[str]:
    """A section's opening lines when `scenario` was merged (`subject`: what of the section it measured, if not all
    of it); none otherwise."""
    at = when(results, scenario)
    if at is None:
        return []
    command = results["merged"][scenario]["command"]
    said = f"{subject} were measured" if subject else "Measured"
    return [f"{said} {at}, after the full run above (`{command}`).", ""]


def targets_note(results: dict) -> list[str]:
    """The targets table's opening lines when rows of it come from merged scenarios."""
    merged = [
        f"the `{scenario}` scenario's {at} (`{results['merged'][scenario]['command']}`)"
        for scenario in TARGETS
        if (at := when(results, scenario))
    ]
    return ["Rows measured after the full run above: " + "; ".join(merged) + ".", ""] if merged else []


def caption(results: dict, where: str) -> str:
    """The plot's caption: the full run's `where`, or the hand-off's own run's if it was merged."""
    entry = results.get("merged", {}).get("handoff")
    if not entry:
        return where
    return f"{hardware(entry['machine'])}; commit {entry['commit']}, {entry['date']}, after the full run"
