"""Issue 13's proof: Handoff on six hosts (conftest.py, cluster.py), 100+ concurrent streams through Caddy on E,
with faults on the network, not on the processes: a replica's host drops off the network mid-stream (its link goes
down: no RST, no FIN, every connection to it half-open), comes back, and the API and worker host loses Postgres for
5 s while everything else still reaches it. Each client's events are checked against the stream table (faults.judge)
and each test adds a row to the table printed at the end of the session."""

from __future__ import annotations

import time

import pytest
from cluster import (
    API_PORT,
    HEALTH_INTERVAL,
    HEALTH_TIMEOUT,
    LEASE_SECONDS,
    NOTES,
    RESULTS,
    SSE_PORT,
    WORKER_PORT,
    HostClient,
    Prober,
)
from faults import READ_TIMEOUT, judge, start_all

STREAMS = 100
MAX_TOKENS = 300  # 20 ms a token: about 6 s a stream
PARTITION_SECONDS = 5


def test_1_streams_across_hosts_complete(cluster):
    clients = [HostClient(cluster, MAX_TOKENS, prompt=f"hosts {i}") for i in range(STREAMS)]
    fault_at = start_all(clients, 0)
    verdict = judge(
        cluster,
        "1. baseline: 100 streams, API+worker on B, replicas on C and D, Caddy on E, clients on F",
        clients,
        fault_at,
    )
    verdict.recover_seconds = 0.0  # no fault: the column says nothing here
    RESULTS.append(verdict)
    assert (verdict.lost, verdict.duplicated, verdict.hung, verdict.explicit_errors) == (0, 0, 0, 0), verdict
    assert all(c.done and len(c.events) == MAX_TOKENS + 2 for c in clients), "role chunk, 300 tokens, finish chunk"
    served = {c.replicas[0] for c in clients}
    assert served == {cluster.replica("C"), cluster.replica("D")}, served
    assert all(len(c.replicas) == 1 for c in clients), "no stream needed a second connection"


def first_after(moments: list[tuple[float, str]], wall: float, replica: str) -> float | None:
    """Seconds from `wall` to the first of Caddy's log lines about `replica` (None: there is none)."""
    times = [ts for ts, host in moments if host == replica and ts >= wall]
    return min(times) - wall if times else None


def test_2_a_replica_host_dropping_off_the_network_loses_nothing(cluster):
    """Host C's link goes down mid-stream: no RST, no FIN. Resuming clients on C hear nothing, time out after
    READ_TIMEOUT, reconnect through Caddy with Last-Event-ID and continue on D; Caddy's active health check marks C
    down and new streams stop going to C."""
    victim, survivor = cluster.replica("C"), cluster.replica("D")
    resuming = [HostClient(cluster, MAX_TOKENS, prompt=f"link {i}") for i in range(STREAMS)]
    plain = [HostClient(cluster, MAX_TOKENS, prompt=f"plain link {i}", resume=False) for i in range(20)]
    fault_at = start_all(resuming + plain, 1.5)
    wall = time.time()
    cluster.hosts.link_down("C")
    prober = Prober(cluster).start()
    verdict = judge(
        cluster,
        "2. host C (one of two SSE replicas) drops off the network mid-stream: link down, "
        "its connections left half-open (100 resuming + 20 non-resuming clients)",
        resuming + plain,
        fault_at,
    )
    time.sleep(max(0.0, fault_at + 15 - time.monotonic()))
    probes = prober.stop()
    RESULTS.append(verdict)
    # With health_fails 1 (Caddy's default), the first failed active check marks the upstream unhealthy.
    marked_down = first_after(cluster.caddy_events("HTTP request failed", wall), wall, victim)
    on_victim = [c for c in resuming if c.replicas and c.replicas[0] == victim]
    moved = [c for c in on_victim if c.done and c.replicas[-1] == survivor]
    # A new stream Caddy sends to C before marking it down finds nothing there: after the 1 s dial timeout Caddy
    # retries it on D (lb_try_duration 3 s); a 502 would mean it gave up.
    to_victim = [p for p in probes if p["status"] == 502 or p["replica"] == victim]
    retried = [p for p in probes if p["done"] and p["took"] >= 1.0]
    last_to_victim = max((p["started"] - fault_at for p in to_victim), default=0.0)
    busy = [p for p in probes if p["status"] == 503]
    slowest = max(p["took"] for p in probes if p["done"])
    NOTES.append(
        f"- scenario 2: Caddy's first failed health check of C came {marked_down if marked_down is None else round(marked_down, 1)} s "
        f"after its link went down. Of {len(probes)} new short streams started every 0.25 s from the fault on, "
        f"{len(to_victim)} got a 502 or a stream from C (the last started {last_to_victim:.1f} s after the fault), "
        f"{len(retried)} completed on D after a second or more (a dial to C given up after 1 s, then D), "
        f"{len(busy)} got a 503 from D (its statements past "
        f"HANDOFF_DB_TIMEOUT_MS while it caught up the moved streams), the rest completed on D (slowest "
        f"{slowest:.1f} s). {len(on_victim)} resuming clients were on C, {len(moved)} finished on D; the longest "
        f"silence a resuming client lived through: {verdict.recover_seconds:.1f} s (read timeout {READ_TIMEOUT} s)."
    )
    assert (verdict.lost, verdict.duplicated, verdict.hung, verdict.silently_truncated) == (0, 0, 0, 0), verdict
    assert on_victim and len(moved) == len(on_victim), [c.replicas for c in on_victim]
    # Non-resuming clients: those on D complete; those on C fail visibly (their read timeout); a GET answered with
    # an HTTP error (D busy, 503) never got a stream: visible too.
    assert all(c.done for c in plain if c.replicas and c.replicas[0] == survivor)
    plain_on_victim = [c for c in plain if c.replicas and c.replicas[0] == victim]
    assert plain_on_victim and all(c.visible_failure for c in plain_on_victim), (
        "they fail visibly, after the read timeout"
    )
    assert marked_down is not None and marked_down <= HEALTH_INTERVAL + HEALTH_TIMEOUT + 1, marked_down
    assert last_to_victim <= marked_down + 0.5, f"a new stream went to C {last_to_victim:.1f} s after the fault"
    assert not [p for p in probes if p["status"] == 502], "a dial to C given up after 1 s is retried on D, never a 502"
    late = [p for p in probes if p["started"] - fault_at > marked_down + 0.5]
    assert late and all(p["done"] or p["status"] == 503 for p in late), [p for p in late if not p["done"]]
    assert all(p["replica"] == survivor for p in late)
    assert verdict.recover_seconds <= READ_TIMEOUT + 10, verdict


def test_3_the_replica_host_comes_back_and_takes_new_streams(cluster):
    """C's link comes back: Caddy's health check sees /readyz 200 again and new streams land on C."""
    victim = cluster.replica("C")
    wall = time.time()
    cluster.hosts.link_up("C")
    back_at = time.monotonic()
    waited = cluster.wait_streams_on({"C"}, back_at + 30)
    marked_up = first_after(cluster.caddy_events("host is up", wall), wall, victim)
    clients = [HostClient(cluster, MAX_TOKENS, prompt=f"back {i}") for i in range(STREAMS)]
    fault_at = start_all(clients, 0)
    verdict = judge(
        cluster, "3. host C's link comes back (recover: link up until a new stream completed on C)", clients, fault_at
    )
    verdict.recover_seconds = waited
    RESULTS.append(verdict)
    on_c = sum(1 for c in clients if c.replicas[0] == victim)
    NOTES.append(
        f"- scenario 3: Caddy logged `host is up` for C "
        f"{marked_up if marked_up is None else round(marked_up, 1)} s after its link came back; the first new "
        f"stream completed on C {waited:.1f} s after; of the next {STREAMS} streams, {on_c} ran on C."
    )
    assert (verdict.lost, verdict.duplicated, verdict.hung, verdict.explicit_errors) == (0, 0, 0, 0), verdict
    assert marked_up is not None and marked_up <= 2 * HEALTH_INTERVAL + HEALTH_TIMEOUT + 2, marked_up
    assert STREAMS // 4 <= on_c <= STREAMS * 3 // 4, f"least_conn spreads new streams over C and D: {on_c} on C"


def test_4_the_api_and_worker_host_cut_off_from_postgres_loses_nothing(cluster):
    """B (API + worker) and A (Postgres) drop each other's packets for PARTITION_SECONDS; B still reaches E, C and D
    still reach A. New POSTs get 503 (clients retry, as faults.Client.post does); running streams stall with
    keepalives, then the worker's pending tokens land and every stream completes."""
    clients = [HostClient(cluster, MAX_TOKENS, prompt=f"partition {i}") for i in range(STREAMS)]
    fault_at = start_all(clients, 1.5)
    cluster.hosts.partition("B", "A")
    prober = Prober(cluster, every=0.5).start()
    late = [HostClient(cluster, 50, prompt=f"during partition {i}").start() for i in range(20)]  # POSTs get 503s
    probe = HostClient(cluster, 1, resume=False)
    started = time.monotonic()
    with pytest.raises(AssertionError, match="POST answered 503"):
        probe.hosts.call("F", probe.post, 0)  # no retry: the first answer must be a quick 503
    answered_in = time.monotonic() - started
    time.sleep(max(0.0, fault_at + 2.5 - time.monotonic()))  # past one readiness check (every second, 1 s deadline)
    during = {
        name: cluster.status(host, port, "/readyz")
        for name, host, port in (
            ("api", "B", API_PORT),
            ("worker", "B", WORKER_PORT),
            ("sse C", "C", SSE_PORT),
            ("sse D", "D", SSE_PORT),
        )
    }
    time.sleep(max(0.0, fault_at + PARTITION_SECONDS - time.monotonic()))
    cluster.hosts.heal("B", "A")
    healed_at = time.monotonic()
    probes = prober.stop(wait=3)
    verdict = judge(
        cluster,
        f"4. host B (API + worker) cut off from Postgres on A for {PARTITION_SECONDS} s "
        "mid-stream (100 running streams + 20 POSTed during it)",
        clients + late,
        fault_at,
    )
    RESULTS.append(verdict)
    stuck = [c for c in clients + late if not c.done]
    ids = ",".join(f"'{c.task_id}'" for c in stuck if c.task_id) or "NULL"
    stuck_tasks = cluster.sql(f"SELECT status, attempts, count(*) FROM handoff_tasks WHERE id IN ({ids}) GROUP BY 1, 2")
    posts = [p for p in probes if p["started"] < healed_at - 1]  # answered while B could not reach A
    slowest_post = max(p.get("posted", p["took"]) for p in posts)
    finished = max(c.ended_at or time.monotonic() for c in late) - healed_at
    NOTES.append(
        f"- scenario 4: during the partition the API answered POSTs ({len(posts)} probes, one every 0.5 s) "
        f"{sorted({p['status'] for p in posts}, key=str)} in at most {slowest_post:.1f} s; /readyz: {during}; "
        f"the 20 completions POSTed during it had all finished {finished:.1f} s after it healed"
        + (
            f"; NOT DONE: {len(stuck)} streams, their tasks (status, attempts, count): {stuck_tasks!r}"
            if stuck
            else "."
        )
    )
    assert (verdict.lost, verdict.duplicated, verdict.hung, verdict.explicit_errors) == (0, 0, 0, 0), (
        verdict,
        stuck_tasks,
    )
    assert all(c.done for c in clients + late)
    assert all(p["status"] == "POST 503" for p in posts) and slowest_post < 3, posts
    assert answered_in < 3, f"the API took {answered_in:.1f} s to answer during the partition"
    assert during == {"api": 503, "worker": 503, "sse C": 200, "sse D": 200}, during
    assert all(c.events[0][2] > healed_at for c in late), "nothing was queued while B could not reach Postgres"
    # A claim that committed just as the partition healed, after the worker had stopped waiting for it, leaves tasks
    # the worker never runs: they are not renewed, so they wait out their lease before the rescue requeues them.
    assert verdict.recover_seconds <= PARTITION_SECONDS + LEASE_SECONDS + 5, verdict
