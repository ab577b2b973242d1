"""Streams as clients live them: late, and two hundred at once across both replicas."""

import contextlib
import json
import threading
import time

from handoff_e2e import (
    GOLDEN,
    POOL_SIZE,
    README_BODY,
    SSE_PORTS,
    assert_well_formed,
    get_stream,
    post_and_follow,
    request,
)


def test_late_client_gets_the_whole_stream(cluster):
    reply = request("POST", "/api/chat/completions", json.loads(README_BODY))
    assert reply.status == 302, reply.body
    handoff = reply.json()

    deadline = time.monotonic() + 30
    while (status := cluster.sql(f"SELECT status FROM handoff_tasks WHERE id = '{handoff['task_id']}'")) != "succeeded":
        assert status in ("queued", "running"), status
        assert time.monotonic() < deadline, f"task still {status} after 30 s"
        time.sleep(0.1)

    stream = get_stream(reply.headers["Location"], timeout=10)
    assert_well_formed(stream, handoff["id"])
    assert stream.text == GOLDEN
    assert stream.finish_reasons == ["stop"]
    assert stream.chunks[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 67, "total_tokens": 77}


class OpenStreams:
    """How many clients are reading a stream right now."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @contextlib.contextmanager
    def track(self):
        with self._lock:
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1


CLIENTS = 200
TOKENS = 60
TIME_LIMIT = 90


def test_concurrent_streams_share_replicas_and_connections_stay_constant(cluster):
    open_streams = OpenStreams()
    results: dict[int, tuple[dict, object]] = {}
    errors: dict[int, BaseException] = {}

    def client(n: int) -> None:
        try:
            results[n] = post_and_follow(
                {"model": "demo", "max_tokens": TOKENS, "messages": [{"role": "user", "content": f"client {n}"}]},
                timeout=TIME_LIMIT,
                while_open=open_streams.track,
            )
        except BaseException as error:
            errors[n] = error

    threads = [threading.Thread(target=client, args=(n,), daemon=True, name=f"client-{n}") for n in range(CLIENTS)]
    deadline = time.monotonic() + TIME_LIMIT
    for thread in threads:
        thread.start()

    # (streams open throughout the sample, connections by application_name)
    samples: list[tuple[int, dict[str, int]]] = []
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        before = open_streams.count
        counts = cluster.connection_counts()
        samples.append((min(before, open_streams.count), counts))
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"clients still streaming after {TIME_LIMIT} s"

    assert not errors, f"{len(errors)} clients failed, e.g. {next(iter(errors.items()))!r}"
    busy = [counts for open_count, counts in samples if open_count >= CLIENTS // 2]
    assert busy, f"never saw {CLIENTS // 2} streams open at once (max {max(s[0] for s in samples)})"
    for counts in busy:
        for port in SSE_PORTS:
            assert counts.get(f"handoff-sse-{port}", 0) <= POOL_SIZE, counts
            assert counts.get(f"handoff-sse-{port}-listener", 0) == 1, counts

    for n, (handoff, stream) in sorted(results.items()):
        assert_well_formed(stream, handoff["id"])
        assert len(stream.content_chunks) == TOKENS, f"client {n}"
        assert stream.finish_reasons == ["length"], f"client {n}"
    assert len({handoff["id"] for handoff, _ in results.values()}) == CLIENTS, "two POSTs got the same completion id"
    assert len({handoff["task_id"] for handoff, _ in results.values()}) == CLIENTS, "two POSTs got the same task"

    served = {port: sum(stream.replica == f"127.0.0.1:{port}" for _, stream in results.values()) for port in SSE_PORTS}
    assert sum(served.values()) == CLIENTS, f"unexpected X-Handoff-Replica values: {served}"
    assert all(count >= 20 for count in served.values()), f"streams per replica: {served}"
    print(
        f"streams per replica {served}; {len(samples)} samples, {len(busy)} with >= {CLIENTS // 2} open; "
        f"max connections {max_counts(samples)}"
    )


def max_counts(samples) -> dict[str, int]:
    result: dict[str, int] = {}
    for _, counts in samples:
        for name, count in counts.items():
            result[name] = max(result.get(name, 0), count)
    return result
