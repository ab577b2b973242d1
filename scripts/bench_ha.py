"""Issue 23's scenario: what synchronous replication costs. The hand-off (POST → 302 → first event, as scenario 1) and
the worker's flushes on a stack whose Postgres is the Patroni pair of `make run-ha` (deploy/ha: synchronous_mode, every
commit waits for the standby), reached through HAProxy, against the same on a stack on the bench's single node.

The pair is the bench's own (scripts/ha.sh on ports of its own: HAProxy 26450, Postgres 26451/26452, etcd
26453-26458, Patroni REST 28008/28009; data under /tmp), and so is its stack (Caddy 28180, API 28181, replicas
28182/28183). Both stacks stay up throughout, and rounds alternate between them ABBA at each rate (single, pair,
pair, single, ...), as bench_handoff.py alternates settings. A round's flushes are read from its worker's
`handoff_stream_flush_duration_seconds` before and after it; their p50 and p99 are interpolated within the
histogram's buckets (0.5, 1, 2, 5, 10, 25, 50, 100, 500 ms) over a set's rounds at a rate, their mean is exact."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from bench_handoff import abba, combine
from bench_samplers import flush_histogram, quantile
from bench_session import Session, bench, log
from handoff_stack import Ports, psql
from patroni_pair import PatroniPair

HA_STACK_PORTS = Ports(caddy=28180, api=28181, sse=(28182, 28183))


@contextlib.contextmanager
def patroni_pair() -> Iterator[str]:
    """The bench's pair (patroni_pair.PatroniPair), started until a primary with a synchronous standby answers through
    HAProxy, then stopped and deleted; yields HAProxy's admin URL. Its home is under /tmp, where the postgres user can
    reach it."""
    pair = PatroniPair(
        ha_port=26450,
        pg_ports={"pg1": 26451, "pg2": 26452},
        rest_ports={"pg1": 28008, "pg2": 28009},
        etcd_port=26453,  # etcd1 26453/26454, etcd2 26455/26456, etcd3 26457/26458
        home_prefix="handoff-bench-ha-",
    )
    try:
        pair.start()
        yield pair.admin_url
    except Exception:
        print(pair.log_tails(), file=sys.stderr)
        raise
    finally:
        pair.stop()


def replication_cost(plan: dict, session: Session) -> dict:
    """Every round, and per rate and database the rounds combined (bench_handoff.combine) with their flushes pooled;
    the ratios pair / single."""
    log("synchronous replication: starting the bench's Patroni pair (scripts/ha.sh)")
    with (
        patroni_pair() as ha_url,
        session.running(True) as single,
        session.running(True, admin_url=ha_url, ports=HA_STACK_PORTS) as pair,
    ):
        stacks = {"single": single, "pair": pair}
        standby = psql(ha_url, "SHOW synchronous_standby_names")
        for stack in stacks.values():  # neither's first round pays for its pools' set-up
            bench(session.bin_dir, "handoff", "--port", str(stack.ports.caddy), "--rate", "50", "--duration", "1")
        rounds = []
        for rate, round_, name in abba(plan["rates"], plan["rounds"], "single", "pair"):
            log(
                f"synchronous replication: hand-off at {rate} requests/s for {plan['seconds']} s on the "
                f"{'single node' if name == 'single' else 'Patroni pair'} (round {round_ + 1} of {plan['rounds']})"
            )
            before = flush_histogram(stacks[name])
            row = bench(
                session.bin_dir,
                "handoff",
                *("--port", str(stacks[name].ports.caddy), "--rate", str(rate)),
                *("--duration", str(plan["seconds"])),
            )
            after = flush_histogram(stacks[name])
            flush = {
                "count": after["count"] - before["count"],
                "seconds": after["seconds"] - before["seconds"],
                "buckets": {le: n - before["buckets"].get(le, 0) for le, n in after["buckets"].items()},
            }
            rounds.append({**row, "database": name, "round": round_, "flush": flush})
    rows = []
    for rate in plan["rates"]:
        row = {"rate": rate}
        for name in ("single", "pair"):
            mine = [r for r in rounds if r["rate"] == rate and r["database"] == name]
            row[name] = combine([{k: v for k, v in r.items() if k != "flush"} for r in mine]) | {
                "flush": pooled([r["flush"] for r in mine])
            }
        row["ratio"] = {
            **{
                f"{key}.{p}": row["pair"][key][p] / row["single"][key][p]
                for key in ("redirectMilliseconds", "firstEventMilliseconds")
                for p in ("p50", "p99")
            },
            **{
                f"flush.{key}": row["pair"]["flush"][key] / row["single"]["flush"][key]
                for key in ("p50Ms", "p99Ms", "meanMs")
                if row["single"]["flush"][key] and row["pair"]["flush"][key]
            },
        }
        rows.append(row)
    return {"synchronousStandbyNames": standby, "rows": rows, "rounds": rounds}


def pooled(rounds: list[dict]) -> dict:
    """Rounds' flushes as one: how many, the mean, p50 and p99 (ms) of them all."""
    count, seconds = sum(r["count"] for r in rounds), sum(r["seconds"] for r in rounds)
    buckets: dict[float, float] = {}
    for r in rounds:
        for le, n in r["buckets"].items():
            buckets[float(le)] = buckets.get(float(le), 0) + n
    buckets = dict(sorted(buckets.items()))
    p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
    return {
        "flushes": int(count),
        "meanMs": 1000 * seconds / count if count else None,
        "p50Ms": 1000 * p50 if p50 is not None else None,
        "p99Ms": 1000 * p99 if p99 is not None else None,
    }
