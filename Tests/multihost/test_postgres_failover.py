"""Issue 23's proof on several hosts: the Postgres primary's host drops off the network mid-stream. Postgres is a
Patroni pair on two hosts (pg1 on A, pg2 on G, each with an etcd member; the third etcd member on the witness W),
HAProxy on B is the one endpoint of every Handoff process (pair_cluster.py), the rest as in test_multihost.py.

With 100 resuming and 20 non-resuming streams running and 20 POSTs arriving during the outage, the primary's link
goes down (no RST, no FIN: to everyone else its host looks frozen, while it still reaches itself and its own etcd
member); Patroni promotes the standby, HAProxy leads there, and once every client is done the link comes back and the
old primary rejoins as the new one's synchronous standby (pg_rewind if needed). Checked (ha_checks.py, as
Tests/e2e/test_ha.py does on loopback): never two primaries, each node asked from its own host; nothing lost,
duplicated, hung or silently truncated; every answer equal to its undisturbed one; every POST a 302 and a task, or a
503 with Retry-After until it got one; and every stream row committed before the cut still there, unchanged, on the
new primary and on the rejoined old one. Measured: the cut to the promotion, to HAProxy leading there, to the first
token of a running stream committed on the new primary and to its arrival at a client; the longest silence; the
rejoin."""

from __future__ import annotations

import json
import time

import pytest
from cluster import API_PORT, NOTES, RESULTS, SSE_PORT, HostClient
from ha_checks import assert_survived, fail_over, seconds, undisturbed_answers
from ha_e2e import RecordingClient
from pair_cluster import PLACEMENT, PairCluster

STREAMS = 100  # resuming clients (EventSource-like), mid-stream when the link goes down
PLAIN = 20  # clients that do not resume (openai-python-like)
TOKENS = 600  # 18 s of answer at 30 ms a token, longer than the failover
POSTS = 20  # POSTs arriving during the outage ...
POST_EVERY = 0.5  # ... one every half second from the cut on
POST_TOKENS = 20
FIRST_TOKEN_BOUND = 60  # the cut to the first token on the new primary: promotion (<= 30 s) and a lease, with room


class HostRecordingClient(HostClient, RecordingClient):
    """ha_e2e.RecordingClient on host F, through Caddy on E."""


def prompts() -> list[tuple[str, int, bool]]:
    """(prompt, max_tokens, resumes) of every client; the undisturbed run serves each prompt once."""
    streams = [(f"failover {i}", TOKENS, True) for i in range(STREAMS)]
    plain = [(f"failover plain {i}", TOKENS, False) for i in range(PLAIN)]
    posts = [(post_prompt(n), POST_TOKENS, True) for n in range(POSTS)]
    return streams + plain + posts


def post_prompt(n: int) -> str:
    return f"failover post {n}"


@pytest.fixture(scope="module")
def undisturbed(pair_cluster) -> dict[str, tuple[str, list[str]]]:
    """Each prompt's answer on the healthy pair."""
    return undisturbed_answers([HostClient(pair_cluster, tokens, prompt=prompt) for prompt, tokens, _ in prompts()])


def stream_rows(cluster: PairCluster, task_ids: list[str], node: str | None = None) -> dict[tuple[str, int], str]:
    """(task, seq) -> md5 of the row's events, through HAProxy (the primary) or on `node`."""
    ids = ",".join(f"'{task}'" for task in task_ids)
    statement = (
        "SELECT coalesce(json_agg(json_build_array(task_id, seq, md5(events))), '[]') FROM handoff_stream "
        f"WHERE task_id IN ({ids})"
    )
    out = cluster.sql(statement) if node is None else cluster.node_sql(node, statement)
    return {(task, seq): digest for task, seq, digest in json.loads(out)}


def first_after_cut(cluster: PairCluster, clients: list[HostClient], cut_wall: float, cut_at: float):
    """The first token of a running stream committed on the new primary, in seconds after the cut: committed (the
    row's created_at, its transaction's start, after `cut_wall`: the link was down by then) and received by a client
    (`None`: there is none)."""
    ids = ",".join(f"'{c.task_id}'" for c in clients)
    rows = json.loads(
        cluster.sql(
            "SELECT coalesce(json_agg(json_build_array(task_id, seq, event_count, extract(epoch FROM created_at))), "
            f"'[]') FROM handoff_stream WHERE task_id IN ({ids}) AND created_at > to_timestamp({cut_wall})"
        )
    )
    committed = min((created for _, _, _, created in rows), default=None)
    after: dict[str, set[int]] = {}
    for task, seq, count, _ in rows:
        after.setdefault(task, set()).update(range(seq - count + 1, seq + 1))
    arrivals = [at for c in clients for event_id, _, at in c.events if event_id in after.get(c.task_id, ())]
    return (
        None if committed is None else committed - cut_wall,
        None if not arrivals else min(arrivals) - cut_at,
    )


def test_5_the_primary_postgres_host_drops_off_the_network(pair_cluster, undisturbed):
    cluster, pair = pair_cluster, pair_cluster.pair
    clients = [
        HostClient(cluster, tokens, prompt=prompt, resume=resumes)
        for prompt, tokens, resumes in prompts()[: STREAMS + PLAIN]
    ]
    cut: dict = {}

    def before(victim: str) -> None:
        """What the primary has committed of every stream, just before the cut."""
        cut["rows"] = stream_rows(cluster, [c.task_id for c in clients])

    def link_down(victim: str) -> None:
        cut["at"] = time.monotonic()
        cluster.hosts.link_down(PLACEMENT[victim])
        # Once the link is down, a transaction the old primary starts can no longer commit (synchronous replication):
        # a row on the new primary created after this was written there.
        cut["down"] = time.time()

    def link_up(victim: str) -> None:
        cluster.hosts.link_up(PLACEMENT[victim])

    scenario = (
        "5. the Postgres primary's host drops off the network mid-stream (link down): Patroni promotes the standby "
        "on another host, the old primary rejoins when its link is back (100 resuming + 20 non-resuming clients, "
        "20 POSTs during the outage)"
    )
    seen = fail_over(
        pair,
        cluster,
        scenario,
        clients,
        link_down,
        link_up,
        lambda n: HostRecordingClient(cluster, POST_TOKENS, prompt=post_prompt(n)),
        POSTS,
        POST_EVERY,
        [(cluster.addr["B"], API_PORT), (cluster.addr["C"], SSE_PORT), (cluster.addr["D"], SSE_PORT)],
        settle=1.5,
        before=before,
    )
    RESULTS.append(seen.verdict)
    task_ids = [c.task_id for c in clients]
    on_new = stream_rows(cluster, task_ids)
    on_old = stream_rows(cluster, task_ids, node=seen.victim) if seen.rejoined_at is not None else {}
    gone_new = [key for key, digest in cut["rows"].items() if on_new.get(key) != digest]
    gone_old = [key for key, digest in cut["rows"].items() if on_old.get(key) != digest]
    committed, received = first_after_cut(cluster, clients, cut["down"], cut["at"])
    events = sum(len(c.events) for c in clients)
    # The cut-off primary, asked from its own host, stops answering /primary 200 once its Patroni demotes it.
    demoted = seen.watch.first(seen.watch.primary[seen.victim], seen.fault_at, lambda code: code != 200)
    NOTES.append(
        f"- scenario 5: {seen.victim} (host {PLACEMENT[seen.victim]}) was the primary; cut off, it stopped "
        f"answering /primary 200 {seconds(demoted, seen.fault_at)} after the cut; {seen.measured()}. "
        f"The first token of a running stream was committed on {seen.survivor} "
        f"{'never' if committed is None else f'{committed:.1f} s'} after the cut and reached a client "
        f"{'never' if received is None else f'{received:.1f} s'} after it; the longest silence a client lived "
        f"through: {seen.verdict.recover_seconds:.1f} s. Of the {len(cut['rows'])} stream rows committed before the "
        f"cut, {len(gone_new)} missing or changed on the new primary, {len(gone_old)} on the rejoined old one "
        f"({events} events received in all)."
    )
    print(f"\n{seen.verdict.row()}\n{NOTES[-1]}")
    assert_survived(cluster, seen, undisturbed)
    assert cut["rows"] and not gone_new and not gone_old, (len(cut["rows"]), gone_new[:5], gone_old[:5])
    assert seen.verdict.explicit_errors == 0, seen.verdict
    assert committed is not None and received is not None, (committed, received)
    promoted = seen.promoted_at() - seen.fault_at
    assert promoted - 1 <= committed <= FIRST_TOKEN_BOUND, (
        f"first token committed {committed:.1f} s after the cut, promoted after {seconds(promoted, 0.0)}"
    )
