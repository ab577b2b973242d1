"""One failover under a whole Handoff stack, run and judged: test_ha.py's (a pair on loopback, its primary frozen or
killed) and Tests/multihost's (the pair on hosts of their own, the primary's host cut off the network). `fail_over`
runs it, `pair_problems` and `handoff_problems` say what the pair (Patroni, HAProxy) and Handoff did wrong, each
broken promise one line of a report."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from pathlib import Path
from typing import Callable

from faults import Client, Verdict, judge, start_all
from ha_e2e import Pair, RecordingClient, Watch, other, wait_for
from handoff_stack import Stack

PROMOTION_BOUND = 30  # ttl 10 + loop_wait 2 + an etcd member's timeout and a REST check of the frozen node, with room
REJOIN_BOUND = 60


@dataclasses.dataclass
class Failover:
    """What one failover did, as the clients, the probes and the logs saw it."""

    victim: str
    survivor: str
    fault_at: float
    clients: list[Client]
    posters: list[RecordingClient]
    verdict: Verdict
    watch: Watch
    new_tasks: int
    orphans: list[str] = dataclasses.field(default_factory=list)  # tasks made meanwhile that no client holds
    back_at: float = 0.0
    rejoined_at: float | None = None
    rewound: bool = False
    haproxy: str = ""  # what HAProxy logged from the fault on

    def promoted_at(self) -> float | None:
        return self.watch.first(self.watch.primary[self.survivor], self.fault_at, lambda code: code == 200)

    def routed_at(self) -> float | None:
        return self.watch.first(self.watch.routed, self.fault_at, lambda node: node == self.survivor)

    def measured(self) -> str:
        posts = [attempt for poster in self.posters for attempt in poster.attempts]
        outcomes = {code: sum(1 for a in posts if a.status == code) for code in sorted({a.status for a in posts})}
        waited = max((p.attempts[-1].at - p.attempts[0].at for p in self.posters if p.attempts), default=0.0)
        not_ready = [at for at, codes in self.watch.ready if at >= self.fault_at and codes[0] == 503]
        rejoined = "never" if self.rejoined_at is None else f"{self.rejoined_at - self.back_at:.1f} s"
        return (
            f"promoted after {seconds(self.promoted_at(), self.fault_at)}, HAProxy there "
            f"{seconds(self.routed_at(), self.fault_at)} after the fault; POSTs {outcomes}, longest wait for a 302 "
            f"{waited:.1f} s; API /readyz 503 for {seconds(max(not_ready, default=None), min(not_ready, default=None))}; "
            f"the old primary a synchronous standby again {rejoined} after it came back"
            f"{' (pg_rewind)' if self.rewound else ''}"
        )


def fail_over(
    pair: Pair,
    stack: Stack,
    scenario: str,
    clients: list[Client],
    fault: Callable[[str], None],
    recover: Callable[[str], None],
    poster: Callable[[int], RecordingClient],
    posts: int,
    post_every: float,
    ready: list[tuple[str, int]],
    settle: float = 1.0,
    before: Callable[[str], None] | None = None,
) -> Failover:
    """One failover: the clients stream; `before(victim)` (if given), then `fault(victim)` hits the primary; `posts`
    POSTing clients, `poster(n)`, start one every `post_every` seconds from the fault on; once every client is done,
    `recover(victim)` brings the old primary back, and it must rejoin as the synchronous standby. `ready`: the API's
    and the replicas' (address, port), for `Watch`."""
    victim = pair.primary()
    survivor = other(victim)
    tasks_before = set(stack.sql("SELECT id FROM handoff_tasks").split())
    haproxy_log = pair.home / "run" / "haproxy.log"
    haproxy_offset = haproxy_log.stat().st_size
    watch = Watch(pair, ready).start()
    try:
        start_all(clients, settle)
        if before is not None:
            before(victim)
        fault_at = time.monotonic()
        fault(victim)
        posters = post_from(fault_at, poster, posts, post_every)
        verdict = judge(stack, scenario, clients, fault_at)
        for client in posters:
            client.thread.join(timeout=max(0.0, fault_at + 120 - time.monotonic()))
        new_tasks = set(stack.sql("SELECT id FROM handoff_tasks").split()) - tasks_before
        held = {client.task_id for client in clients + posters}
        seen = Failover(victim, survivor, fault_at, clients, posters, verdict, watch, len(new_tasks))
        seen.orphans = sorted(new_tasks - held)
        log_path = pair.home / "run" / f"{victim}.log"
        log_offset = log_path.stat().st_size
        seen.back_at = time.monotonic()
        recover(victim)
        try:
            seen.rejoined_at = wait_for(
                "rejoined",
                lambda: rejoined(pair.cluster(survivor).get(victim) or {}),
                REJOIN_BOUND,
                interval=0.2,
            )
        except AssertionError:
            pass  # pair_problems reports it
        time.sleep(2)  # a few samples of the healed pair
    finally:
        watch.stop()
    seen.rewound = b"running pg_rewind" in tail(log_path, log_offset)
    seen.haproxy = tail(haproxy_log, haproxy_offset).decode(errors="replace")
    return seen


def post_from(
    start: float, poster: Callable[[int], RecordingClient], posts: int, every: float
) -> list[RecordingClient]:
    """Starts `posts` POSTing clients, one every `every` seconds from `start` on; returns them once all started."""
    posters: list[RecordingClient] = []

    def spawn() -> None:
        for n in range(posts):
            time.sleep(max(0.0, start + n * every - time.monotonic()))
            posters.append(poster(n).start())

    spawner = threading.Thread(target=spawn, daemon=True)
    spawner.start()
    spawner.join(timeout=posts * every + 10)
    return posters


def undisturbed_answers(clients: list[Client]) -> dict[str, tuple[str, list[str]]]:
    """Each client's answer, by prompt, on a healthy stack: what the same request must get across a failover."""
    start_all(clients, 0)
    for client in clients:
        client.thread.join(timeout=90)
    assert all(c.done and c.error is None for c in clients), "the healthy stack did not serve every answer"
    return {prompt_of(client): client.answer for client in clients}


def assert_survived(stack: Stack, seen: Failover, undisturbed: dict) -> None:
    """Patroni and HAProxy first (without them nothing else can hold), then Handoff."""
    infrastructure = pair_problems(seen)
    assert not infrastructure, f"{infrastructure}; {seen.measured()}"
    problems = handoff_problems(stack, seen, undisturbed)
    assert not problems, "Handoff across the failover:\n- " + "\n- ".join(problems) + f"\n({seen.measured()})"


def tail(path: Path, offset: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read()


def pair_problems(seen: Failover) -> list[str]:
    """Patroni promotes the standby in bounded time, never two primaries; HAProxy leads there and never back to the
    old one, without flapping; the old primary comes back as the synchronous standby."""
    problems = []
    if seen.watch.both_primary():
        problems.append(f"two nodes answered /primary 200 at once ({len(seen.watch.both_primary())} samples)")
    promoted_at, routed_at = seen.promoted_at(), seen.routed_at()
    if promoted_at is None or promoted_at - seen.fault_at > PROMOTION_BOUND:
        problems.append(f"{seen.survivor} not promoted within {PROMOTION_BOUND} s")
    if routed_at is None:
        problems.append(f"HAProxy never led to {seen.survivor}")
    elif [at for at, node in seen.watch.routed if at >= routed_at and node == seen.victim]:
        problems.append(f"HAProxy led to the old primary {seen.victim} after the failover")
    flaps = re.findall(rf"Server postgres/{seen.survivor} is DOWN.*", seen.haproxy)
    if flaps:
        problems.append(f"HAProxy marked the new primary down: {flaps}")
    if seen.rejoined_at is None:
        problems.append(f"{seen.victim} not {seen.survivor}'s synchronous standby {REJOIN_BOUND} s after it came back")
    elif seen.watch.pair.rest(seen.victim, "/replica") != 200 or seen.watch.pair.rest(seen.survivor, "/primary") != 200:
        problems.append("after the rejoin, /replica or /primary does not answer 200 where it should")
    return problems


def handoff_problems(stack: Stack, seen: Failover, undisturbed: dict) -> list[str]:
    """What issue 23 asks of Handoff across the failover: each broken promise as a line."""
    problems = []
    for kind in ("lost", "duplicated", "hung"):
        if getattr(seen.verdict, kind):
            problems.append(f"streams: {getattr(seen.verdict, kind)} events {kind} (or streams, if hung)")
    if seen.verdict.silently_truncated:
        problems.append(f"streams: {seen.verdict.silently_truncated} silently truncated")
    problems += answer_problems(stack, seen.clients, undisturbed, "streams")
    # POSTs: a 302, or a 503 with Retry-After (which openai-python retries), never anything else; each ends with a
    # task whose stream is whole; no task made for a POST that was told 503.
    posts = [attempt for poster in seen.posters for attempt in poster.attempts]
    wrong = [(round(a.at - seen.fault_at, 1), a.status, a.body[:200]) for a in posts if a.status not in (302, 503)]
    if wrong:
        problems.append(f"{len(wrong)} POST answers neither 302 nor 503 (s, status, body): {wrong[:3]}")
    bare = [(round(a.at - seen.fault_at, 1), a.body[:200]) for a in posts if a.status == 503 and not a.retry_after]
    if bare:
        problems.append(f"{len(bare)} 503s without Retry-After (s after the fault, body): {bare[:2]}")
    if not all(p.task_id for p in seen.posters):
        problems.append(f"{sum(1 for p in seen.posters if not p.task_id)} POSTs never got a task")
    problems += answer_problems(stack, [p for p in seen.posters if p.task_id], undisturbed, "POSTed during it")
    if seen.new_tasks != len(seen.clients) + len(seen.posters):
        clients = len(seen.clients) + len(seen.posters)
        problems.append(f"{seen.new_tasks} tasks made for {clients} clients")
    if seen.orphans:
        ids = ",".join(f"'{task}'" for task in seen.orphans)
        rows = stack.sql(
            "SELECT row_to_json(t) FROM (SELECT id, status, created_at, started_at, finished_at, "
            "request->'messages'->0->>'content' AS prompt FROM handoff_tasks "
            f"WHERE id IN ({ids}) ORDER BY created_at) t"
        ).splitlines()
        problems.append(f"{len(seen.orphans)} tasks no client holds (a POST told 503, or never answered): {rows}")
    logs = [
        line for log in sorted(stack.log_dir.glob("*.log")) for line in log.read_text(errors="replace").splitlines()
    ]
    misuse = [line for line in logs if "CONTINUATION MISUSE" in line]
    if misuse:
        problems.append(f"{len(misuse)} lines of the logs say {misuse[0]!r}")
    # Readiness: not ready while no primary answers, ready again after.
    if not [at for at, codes in seen.watch.ready if at >= seen.fault_at and codes[0] == 503]:
        problems.append("the API's /readyz never answered 503 while no primary answered")
    if not seen.watch.ready or any(code != 200 for code in seen.watch.ready[-1][1]):
        problems.append(f"/readyz of the API and replicas after the failover: {seen.watch.ready[-1:]}")
    return problems


def answer_problems(stack: Stack, clients: list[Client], undisturbed: dict, who: str) -> list[str]:
    """A finished client has the undisturbed answer; an unfinished one (not resuming) failed visibly."""
    problems = []
    invisible = [c for c in clients if not (c.done or c.error is not None or c.visible_failure)]
    if invisible:
        first = diagnose(stack, invisible[0], undisturbed)
        problems.append(f"{who}: {len(invisible)} neither finished nor failed visibly: {first}")
    differ = [c for c in clients if c.done and c.error is None and c.answer != undisturbed[prompt_of(c)]]
    if differ:
        first = diagnose(stack, differ[0], undisturbed)
        problems.append(f"{who}: {len(differ)} answers differ from the undisturbed ones; first: {first}")
    errors = [c for c in clients if c.error is not None]
    if errors:
        first = diagnose(stack, errors[0], undisturbed)
        problems.append(f"{who}: {len(errors)} ended with an error event; the first: {first}")
    return problems


def prompt_of(client: Client) -> str:
    return client.body["messages"][0]["content"]


def diagnose(stack: Stack, client: Client, undisturbed: dict) -> str:
    """What went wrong with one client's answer: where it leaves the undisturbed one, its task row, its worker's log."""
    prompt = prompt_of(client)
    (text, reasons), (expected, expected_reasons) = client.answer, undisturbed[prompt]
    at = next((i for i, (a, b) in enumerate(zip(text, expected)) if a != b), min(len(text), len(expected)))
    row = stack.sql(
        "SELECT row_to_json(t) FROM (SELECT id, status, attempts, continuations, error, usage, worker_id "
        f"FROM handoff_tasks WHERE id = '{client.task_id}') t"
    )
    worker_log = (stack.log_dir / "worker.log").read_text(errors="replace").splitlines()
    mentions = [line for line in worker_log if client.task_id and client.task_id in line][:8]
    return (
        f"prompt {prompt!r}, error {client.error}, {len(text)} characters ({reasons}) against {len(expected)} "
        f"({expected_reasons}); they part at {at}: got {text[max(0, at - 60) : at + 60]!r}, expected "
        f"{expected[max(0, at - 60) : at + 60]!r}; task {row}; worker log: {mentions}"
    )


def seconds(later: float | None, earlier: float | None) -> str:
    return "never" if later is None or earlier is None else f"{later - earlier:.1f} s"


def rejoined(member: dict) -> bool:
    """The old primary, as the survivor's Patroni lists it, is back as the running synchronous standby (one read)."""
    return member.get("role") == "sync_standby" and member.get("state") == "running"
