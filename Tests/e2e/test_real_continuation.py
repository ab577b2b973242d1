"""Issue 22's proof on a real model: an answer whose server dies mid-answer, or whose worker dies, goes on to its end in
the same stream, continued by a real llama-server from the text already streamed (a trailing assistant message).

Two llama-servers of SmolLM2-135M (llama_pair_e2e.py: A and B, each behind a recording proxy) serve the catalogue's
`local-continued`, both with `"continuation": "prefill"`. openai-python streams a long answer at temperature 0; after
KILL_AFTER content chunks, server A, the one writing it, gets SIGKILL. The client must get one answer with no
exception, whose text is the text it had at the kill, then more, and nothing repeated at the joint: the continuation
request B got is the original request with the text streamed so far as its last message, and fewer max_tokens. Then
the same with a worker killed instead, on a small stack of its own (two workers with a 3 s lease, `local` on server B
alone), so the session's worker is never killed. The model's text is never pinned, only its shape."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import uuid

import openai
import pytest
from catalogue_e2e import PAIR_PROXY_PORTS
from handoff_e2e import CADDY_PORT, kill_holder, start_with_workers
from handoff_stack import Ports, Stack
from llama_pair_e2e import Forwarded, LlamaPair
from upstream_e2e import marker, sub

MAX_TOKENS = 200
KILL_AFTER = 20  # content chunks the client has when the fault is injected
TIMEOUT = 120  # a 135M model on two cores; every read is bounded by it
LOST = Ports(caddy=18100, api=18101, sse=(18102,))
LOST_WORKERS = ("continued-worker-a", "continued-worker-b")
LEASE_SECONDS = 3
LECTURE = (
    "I am preparing a long lecture for first-year students about the history of the printing press, from woodblock "
    "printing in China to Gutenberg's movable type and the spread of printed books across Europe. "
) * 3 + "Write a long, detailed essay on this history, with many paragraphs, names, dates and examples."


def lecture(tag: str) -> list[dict]:
    return [{"role": "user", "content": f"({tag}) {LECTURE}"}]


def sdk(port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/api", api_key="unused", max_retries=0, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def pair(llama_server, log_dir) -> LlamaPair:
    """Servers A and B and their proxies; stopped (by process id) whatever happened to them."""
    servers = LlamaPair(log_dir)
    try:
        try:
            servers.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            raise pytest.fail.Exception(f"the llama-server pair did not start: {error}", pytrace=False) from None
        yield servers
    finally:
        servers.stop()


@dataclasses.dataclass
class Answer:
    """What openai-python streamed, and the text the client had when the fault was injected."""

    chunks: list
    before: str | None

    @property
    def contents(self) -> list[str]:
        return [c.choices[0].delta.content for c in self.chunks if c.choices and c.choices[0].delta.content]

    @property
    def text(self) -> str:
        return "".join(self.contents)


def stream_with_a_fault(client: openai.OpenAI, model: str, tag: str, fault) -> Answer:
    """Streams a long answer; calls fault(completion id) once the client has KILL_AFTER content chunks."""
    stream = client.chat.completions.create(
        model=model,
        messages=lecture(tag),
        stream=True,
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream_options={"include_usage": True},
    )
    answer = Answer([], None)
    for chunk in stream:  # an error event would raise openai.APIError here
        answer.chunks.append(chunk)
        if answer.before is None and len(answer.contents) >= KILL_AFTER:
            fault(chunk.id)
            answer.before = answer.text
    return answer


def assert_one_answer(answer: Answer, model: str) -> None:
    """One completion, whole: one id, one role chunk (the first), one finish reason, the usage last."""
    chunks = answer.chunks
    assert answer.before is not None, f"the answer ended before the fault, after {len(answer.contents)} chunks"
    assert len({c.id for c in chunks}) == 1 and {c.model for c in chunks} == {model}
    roles = [c for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == [chunks[0]], f"a second role chunk: {[c.model_dump() for c in roles]}"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"]), finishes
    *content, last = chunks
    assert last.choices == [] and last.usage is not None and all(c.usage is None for c in content), last
    assert last.usage.completion_tokens >= len(answer.contents), (last.usage, len(answer.contents))
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens, last.usage


def without(body: dict, *keys: str) -> dict:
    return {k: v for k, v in body.items() if k not in keys}


def assert_continued_at_the_joint(answer: Answer, first: Forwarded, then: Forwarded) -> None:
    """`then` is `first` again with the text streamed so far (a prefix of the client's text, from whole chunks, and
    at least what it had at the fault) as a trailing assistant message and fewer max_tokens; after that text, the
    client's is what `then` generated, with nothing repeated."""
    *messages, prefill = then.body["messages"]
    assert messages == first.body["messages"], "the continuation does not carry the original messages"
    assert prefill["role"] == "assistant" and set(prefill) == {"role", "content"}, prefill
    prefill = prefill["content"]
    assert without(then.body, "messages", "max_tokens") == without(first.body, "messages", "max_tokens")
    assert first.body["max_tokens"] == MAX_TOKENS
    assert then.body["max_tokens"] <= MAX_TOKENS - KILL_AFTER, (
        f"max_tokens {then.body['max_tokens']}: not reduced by the {KILL_AFTER}+ tokens already produced"
    )
    text = answer.text
    assert prefill.startswith(answer.before), (
        f"the prefill is not what the client had at the fault: {prefill[:200]!r} vs {answer.before[:200]!r}"
    )
    assert text.startswith(prefill), f"the client's text does not begin with the prefill: {text[:300]!r}"
    joint = [n for n in range(len(answer.contents) + 1) if "".join(answer.contents[:n]) == prefill]
    assert joint, "the prefill ends inside a chunk the client got"
    print(
        f"\nthe prefill: {len(prefill)} characters, the client's first {joint[0]} content chunks "
        f"({len(answer.before)} characters at the fault); first 200 {prefill[:200]!r}; last 200 {prefill[-200:]!r}; "
        f"max_tokens {then.body['max_tokens']}; usage {sub(answer.chunks[-1].usage.model_dump())}, "
        f"{len(answer.contents)} content chunks"
    )
    after = text[len(prefill) :]
    assert not after.startswith(prefill), (
        f"the text before the joint is repeated after it (chunk {joint[0]} on): "
        f"...{prefill[-80:]!r} | {after[: len(prefill) + 80]!r}; the continuation's first deltas: {then.contents()[:3]}"
    )
    # What the client got after the joint is what the continuation generated (llama-server may repeat the prefill at
    # the start of its reply: that is not generated text).
    assert after == "".join(then.contents()).removeprefix(prefill), (after[:300], then.contents()[:5])


def settled(records, count: int, timeout: float = 10) -> list[Forwarded]:
    """records() once it holds `count` requests, all of them over."""
    deadline = time.monotonic() + timeout
    while not ((found := records()) and len(found) >= count and all(r.outcome for r in found)):
        assert time.monotonic() < deadline, f"the proxy's records never settled: {[r.outcome for r in found]}"
        time.sleep(0.05)
    return found


# ----- a server killed mid-answer ------------------------------------------------------------------------------


def test_a_server_killed_mid_answer_is_continued_by_the_other(cluster, pair, task_usage):
    tag = marker()

    def kill_the_server_writing_it(_completion_id: str) -> None:
        writing = {name: proxy.matching(tag) for name, proxy in pair.proxies.items()}
        assert [len(writing["A"]), len(writing["B"])] == [1, 0], f"not A alone writing the answer: {writing}"
        pair.kill("A")

    answer = stream_with_a_fault(sdk(CADDY_PORT), "local-continued", tag, kill_the_server_writing_it)
    assert_one_answer(answer, "local-continued")
    [first] = settled(lambda: pair.proxies["A"].matching(tag), 1)
    [then] = settled(lambda: pair.proxies["B"].matching(tag), 1)
    assert first.outcome == "cut" and (then.status, then.outcome) == (200, "complete"), (first, then)
    assert len(pair.proxies["A"].matching(tag)) == 1, "the killed server was asked again"
    assert sub(task_usage(answer.chunks[0].id)) == sub(answer.chunks[-1].usage.model_dump())
    assert_continued_at_the_joint(answer, first, then)


# ----- a worker killed mid-answer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lost_stack(cluster, pair, tmp_path_factory) -> Stack:
    """A database of its own, keyless, with one SSE replica, Caddy and two workers with a 3 s lease; its catalogue's
    `local` is server B (through its proxy) alone, which continues answers."""
    logs = tmp_path_factory.mktemp("real-continued-logs")
    stack = Stack(cluster.admin_url, LOST, logs, cluster.bin_dir, prefix="handoff_real_continued")
    catalogue = logs / "models.json"
    local = {
        "base_url": f"http://127.0.0.1:{PAIR_PROXY_PORTS['B']}/v1",
        "model": "smollm2",
        "continuation": "prefill",
        "max_concurrent_requests": 2,
        "first_token_timeout_ms": 60000,
        "between_tokens_timeout_ms": 30000,
        "backoff_ms": 1,
    }
    models = [{"name": "demo", "backend": "demo"}, {"name": "local", "backend": "openai", "upstreams": [local]}]
    catalogue.write_text(json.dumps({"models": models}))
    stack.create_database()
    try:
        start_with_workers(
            stack,
            {"HANDOFF_KEEPALIVE_SECONDS": "1", "HANDOFF_MODELS_FILE": str(catalogue)},
            {"HANDOFF_LEASE_SECONDS": str(LEASE_SECONDS), "HANDOFF_DEMO_TOKEN_DELAY_MS": "20"},
            LOST_WORKERS,
        )
        yield stack
    finally:
        stack.stop()
        stack.drop_database()


def test_a_worker_killed_mid_answer_is_continued_by_the_other(pair, lost_stack):
    tag = marker()
    killed = []

    def kill_the_worker_running_it(completion_id: str) -> None:
        task = uuid.UUID(hex=completion_id.removeprefix("chatcmpl-"))
        kill_holder(lost_stack, LOST_WORKERS, task)
        killed.append(task)

    answer = stream_with_a_fault(sdk(LOST.caddy), "local", tag, kill_the_worker_running_it)
    assert_one_answer(answer, "local")
    [task] = killed
    first, then = settled(lambda: pair.proxies["B"].matching(tag), 2, timeout=LEASE_SECONDS + 10)
    assert first.outcome == "client gone" and (then.status, then.outcome) == (200, "complete"), (first, then)
    deadline = time.monotonic() + 10
    while (ended := lost_stack.sql(f"SELECT status, continuations FROM handoff_tasks WHERE id = '{task}'")) in (
        "running|1",
        "queued|1",
    ):
        assert time.monotonic() < deadline, f"the task is still {ended}"
        time.sleep(0.05)
    assert ended == "succeeded|1", "not continued once, to success"
    assert_continued_at_the_joint(answer, first, then)
