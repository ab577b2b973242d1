"""Issue 10's proof, end to end, for admission and limits: 50 concurrent requests on two API replicas admit exactly
what a token limit fits, and 20 exactly the requests per minute; /api, /v1 and non-streaming requests count alike; a
model scope counts only its model; the x-ratelimit-* headers decrease as tokens are spent; the openai SDK raises
RateLimitError and, told to retry, waits for Retry-After; the input limits (a key's max_tokens cap, the number of
messages, the prompt's characters). On conftest.py's `keyed` API servers.
"""

from __future__ import annotations

import collections
import threading
import time

import openai
import pytest
from handoff_e2e import GOLDEN, Reply
from keys_e2e import (
    API_PORTS,
    CADDY,
    MAX_MESSAGES,
    MAX_PROMPT_CHARS,
    SEED,
    Handoff,
    Key,
    OpenStream,
    content_chunks,
    demo,
    encoded,
    hand_off,
    post,
    read_whole,
    wait_ended,
)
from limits_e2e import (
    assert_rate_headers,
    assert_rate_limited,
    fresh_minute,
    openai_error,
    rate_headers,
    reservation,
    reset_seconds,
    utc_minute,
)


def burst(body: bytes, key: Key, count: int) -> list[tuple[int, Reply]]:
    """`count` POST /api/chat/completions at once, alternating between the two keyed API servers (directly, not
    through Caddy, so both certainly take part)."""
    barrier = threading.Barrier(count)
    results: list[tuple[int, Reply] | BaseException | None] = [None] * count

    def send(n: int) -> None:
        port = API_PORTS[n % len(API_PORTS)]
        try:
            barrier.wait(timeout=20)
            results[n] = (port, post("/api/chat/completions", body, key, port))
        except BaseException as error:
            results[n] = error

    threads = [threading.Thread(target=send, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    failures = [r for r in results if not isinstance(r, tuple)]
    assert not failures, f"{len(failures)} requests got no answer, e.g. {failures[0]!r}"
    return results  # type: ignore[return-value]


def tally(replies: list[tuple[int, Reply]]) -> dict:
    return dict(collections.Counter((port, reply.status) for port, reply in replies))


# ----- admission under concurrency ---------------------------------------------------------------------------------


def test_fifty_concurrent_requests_on_two_replicas_admit_exactly_what_the_token_limit_fits(keyed, task_usage):
    fresh_minute(25)  # the per-minute counters are checked at the end
    minute = utc_minute()
    max_tokens = 250  # 5 s of demo tokens: every admitted task still holds its reservation when the burst is over
    body = encoded(demo("fifty at once", max_tokens=max_tokens))
    each = reservation(body, max_tokens)
    limit = 10 * each
    key = keyed.key("burst", tokens_per_minute=limit)

    replies = burst(body, key, 50)
    admitted = [reply for _, reply in replies if reply.status == 302]
    refused = [reply for _, reply in replies if reply.status == 429]
    assert (len(admitted), len(refused)) == (10, 40), f"(port, status): count = {tally(replies)}"
    row = keyed.cli.usage_row(key)
    assert row["reserved_tokens"] == 10 * each, (row, each)

    remaining = sorted(
        assert_rate_headers(r, requests=None, tokens=limit)["x-ratelimit-remaining-tokens"] for r in admitted
    )
    assert remaining == [each * k for k in range(10)], f"remaining after each admission: {remaining}, each {each}"
    for reply in refused:
        assert_rate_limited(reply, "TPM", key, limit, requested=each)
        assert float(reply.headers["retry-after-ms"]) <= 2000, "only reservations block: retry in about a second"
        assert assert_rate_headers(reply, requests=None, tokens=limit)["x-ratelimit-remaining-tokens"] == 0

    handoffs = [Handoff(reply) for reply in admitted]
    for handoff in handoffs:
        stream = read_whole(handoff.location, key.auth, CADDY, timeout=30)
        assert len(content_chunks(stream.chunks)) == max_tokens
    charged = sum(task_usage(h.task_id)["total_tokens"] for h in handoffs)
    assert charged == 10 * (3 + max_tokens)  # the demo model: the prompt's words plus max_tokens
    row = keyed.cli.usage_row(key)
    assert utc_minute() == minute, "the test straddled a minute: fresh_minute did not leave enough time"
    assert (row["reserved_tokens"], row["tokens_this_minute"], row["tokens_today"], row["requests_this_minute"]) == (
        0,
        charged,
        charged,
        10,
    ), row


def test_twenty_concurrent_requests_admit_exactly_the_requests_per_minute(keyed):
    fresh_minute(15)
    minute = utc_minute()
    key = keyed.key("rpm", requests_per_minute=5)
    replies = burst(encoded(demo("twenty at once", max_tokens=1)), key, 20)
    admitted = [reply for _, reply in replies if reply.status == 302]
    refused = [reply for _, reply in replies if reply.status == 429]
    assert (len(admitted), len(refused)) == (5, 15), f"(port, status): count = {tally(replies)}"
    left = 60 - time.time() % 60
    remaining = sorted(
        assert_rate_headers(r, requests=5, tokens=None)["x-ratelimit-remaining-requests"] for r in admitted
    )
    assert remaining == [0, 1, 2, 3, 4], remaining
    for reply in refused:
        match = assert_rate_limited(reply, "RPM", key, 5, requested=1)
        assert int(match["used"]) == 5, reply.json()
        assert abs(int(reply.headers["Retry-After"]) - left) <= 2, ("retry when the minute ends", left, reply.headers)
        headers = assert_rate_headers(reply, requests=5, tokens=None)
        assert headers["x-ratelimit-remaining-requests"] == 0
        assert abs(reset_seconds(headers["x-ratelimit-reset-requests"]) - left) <= 2, (headers, left)
    row = keyed.cli.usage_row(key)
    assert utc_minute() == minute, "the test straddled a minute"
    assert (row["requests_this_minute"], row["requests_per_minute"]) == (5, 5), row


def test_limits_count_api_v1_and_non_streaming_requests_alike(keyed):
    fresh_minute(15)
    key = keyed.key("paths", requests_per_minute=3)
    handoff = hand_off(demo("by /api", max_tokens=2), key, CADDY)
    assert assert_rate_headers(handoff.reply, requests=3, tokens=None)["x-ratelimit-remaining-requests"] == 2
    read_whole(handoff.location, key.auth, CADDY)
    with OpenStream("/v1/chat/completions", key.auth, CADDY, body=demo("by /v1", max_tokens=2)) as transparent:
        assert transparent.status == 200, transparent.body[:500]
        transparent.read_to_end()
    whole = post("/v1/chat/completions", demo("whole", max_tokens=2, stream=False), key, CADDY)
    assert whole.status == 200 and whole.json()["object"] == "chat.completion", whole.body[:500]

    for path, body in (
        ("/api/chat/completions", demo("fourth", max_tokens=2)),
        ("/v1/chat/completions", demo("fourth", max_tokens=2)),
        ("/v1/chat/completions", demo("fourth", max_tokens=2, stream=False)),
    ):
        assert_rate_limited(post(path, body, key, CADDY), "RPM", key, 3, requested=1)
    assert keyed.cli.usage_row(key)["requests_this_minute"] == 3


def test_a_model_scope_counts_only_requests_for_that_model(keyed):
    key = keyed.key("scoped")
    keyed.cli.limit(key.id, model="demo", requests_per_minute=1)
    limits = keyed.cli.listed(key)["limits"]
    assert {"model": "demo", "requests_per_minute": 1, "tokens_per_minute": None, "tokens_per_day": None} in limits, (
        limits
    )
    fresh_minute(10)
    hand_off(demo("scoped one", max_tokens=1), key, CADDY)
    refused = post("/api/chat/completions", demo("scoped two", max_tokens=1), key, CADDY)
    assert refused.status == 429, refused.body[:500]
    error = openai_error(refused, 429)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded"), error
    assert "requests per min (RPM): Limit 1," in error["message"], error
    other = post(
        "/api/chat/completions",
        {
            "model": "stub-openai",
            "stream": True,
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "another model"}],
        },
        key,
        CADDY,
    )
    assert other.status == 302, other.body[:500]
    assert keyed.cli.usage_row(key, "demo")["requests_this_minute"] == 1
    whole_key = keyed.cli.usage_row(key, "")
    assert (whole_key["requests_this_minute"], whole_key["requests_per_minute"]) == (2, None), whole_key


# ----- headers -----------------------------------------------------------------------------------------------------


def test_remaining_tokens_decrease_as_tokens_are_spent(keyed, task_usage):
    fresh_minute(15)
    key = keyed.key("headers", requests_per_minute=1000, tokens_per_day=100_000)
    body = encoded(demo("count what I spend", max_tokens=20))
    each = reservation(body, 20)
    spent, seen = 0, []
    for n in range(3):
        handoff = hand_off(body, key, CADDY)
        values = assert_rate_headers(handoff.reply, requests=1000, tokens=100_000)
        assert values["x-ratelimit-remaining-tokens"] == 100_000 - spent - each, (values, spent, each)
        assert values["x-ratelimit-remaining-requests"] == 1000 - (n + 1), values
        until_midnight = 86400 - time.time() % 86400  # the only token window is the UTC day
        assert abs(reset_seconds(values["x-ratelimit-reset-tokens"]) - until_midnight) <= 5, values
        assert 0 < reset_seconds(values["x-ratelimit-reset-requests"]) <= 60, values
        seen.append(values["x-ratelimit-remaining-tokens"])
        read_whole(handoff.location, key.auth, CADDY)
        spent += task_usage(handoff.task_id)["total_tokens"]
    assert seen[0] > seen[1] > seen[2], seen
    assert keyed.cli.usage_row(key)["tokens_today"] == spent


# ----- the openai SDK ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["/api", "/v1"])
def test_the_sdk_raises_rate_limit_error_without_retries(keyed, base):
    fresh_minute(10)
    key = keyed.key("sdk-limited", requests_per_minute=1)
    hand_off(demo("the only one this minute", max_tokens=1), key, CADDY)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{CADDY}{base}", api_key=key.secret, max_retries=0, timeout=30)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="demo", messages=SEED, max_tokens=1, stream=True)
    assert raised.value.status_code == 429 and raised.value.code == "rate_limit_exceeded", raised.value
    assert raised.value.type == "requests" and "requests per min (RPM)" in raised.value.message
    assert int(raised.value.response.headers["retry-after"]) >= 1


def test_the_sdk_waits_retry_after_and_succeeds_once_a_reservation_is_released(keyed):
    # The holder reserves its prompt estimate plus 40; the limit leaves 10 beside it, less than any request needs.
    # Once it ends it is charged its real usage (2 words + 40), which leaves room for the SDK's request.
    holder_body = encoded(demo("hold " + "z" * 400, max_tokens=40))
    limit = reservation(holder_body, 40) + 10
    key = keyed.key("sdk-retry", tokens_per_day=limit)
    holder = hand_off(holder_body, key, CADDY)

    base = f"http://127.0.0.1:{CADDY}/api"
    with pytest.raises(openai.RateLimitError) as raised:
        openai.OpenAI(base_url=base, api_key=key.secret, max_retries=0, timeout=30).chat.completions.create(
            model="demo", messages=SEED, max_tokens=5
        )
    assert raised.value.type == "tokens" and "tokens per day (TPD)" in raised.value.message, raised.value.message
    assert float(raised.value.response.headers["retry-after-ms"]) <= 2000, "only a reservation blocks: about 1 s"

    statuses: list[int] = []
    http_client = openai.DefaultHttpxClient(
        event_hooks={"response": [lambda response: statuses.append(response.status_code)]}
    )
    client = openai.OpenAI(base_url=base, api_key=key.secret, max_retries=2, timeout=30, http_client=http_client)
    started = time.monotonic()
    completion = client.chat.completions.create(model="demo", messages=SEED, max_tokens=5)
    waited = time.monotonic() - started
    assert completion.choices[0].message.content == " ".join(GOLDEN.split()[:5])
    assert statuses[0] == 429 and statuses[-2:] == [302, 200] and set(statuses[:-2]) == {429}, statuses
    assert waited >= 0.5, f"the SDK retried after {waited:.2f} s: it did not wait for Retry-After"
    assert wait_ended(keyed.cluster, holder.task_id)[0] == "succeeded"


# ----- input limits ------------------------------------------------------------------------------------------------


def test_max_tokens_above_the_keys_cap_is_refused_and_not_counted(keyed):
    fresh_minute(10)
    key = keyed.key("capped", max_tokens=50, requests_per_minute=1)
    for field in ("max_tokens", "max_completion_tokens"):
        for path in ("/api/chat/completions", "/v1/chat/completions"):
            reply = post(path, demo("too long", **{field: 51}), key, CADDY)
            error = openai_error(reply, 400)
            assert (error["param"], error["type"]) == (field, "invalid_request_error"), error
            assert assert_rate_headers(reply, requests=1, tokens=None)["x-ratelimit-remaining-requests"] == 1
    handoff = hand_off(demo("just right", max_completion_tokens=50), key, CADDY)
    assert assert_rate_headers(handoff.reply, requests=1, tokens=None)["x-ratelimit-remaining-requests"] == 0
    assert keyed.cli.usage_row(key)["requests_this_minute"] == 1


def test_too_many_messages_or_prompt_characters_are_refused(keyed):
    fresh_minute(10)
    key = keyed.key("inputs", tokens_per_day=1_000_000)
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    refused = {
        "messages": [user(f"m{n}") for n in range(MAX_MESSAGES + 1)],
        "characters": [user("a" * (MAX_PROMPT_CHARS + 500))],
        "characters in all": [user("b" * (MAX_PROMPT_CHARS // 2 + 200)), user("c" * (MAX_PROMPT_CHARS // 2 + 200))],
    }
    for what, messages in refused.items():
        for port, path in (
            (API_PORTS[0], "/api/chat/completions"),
            (API_PORTS[1], "/api/chat/completions"),
            (CADDY, "/v1/chat/completions"),
        ):
            reply = post(path, {"model": "demo", "max_tokens": 1, "messages": messages}, key, port)
            assert openai_error(reply, 400)["param"] == "messages", (what, reply.body)
            assert "x-ratelimit-limit-tokens" in rate_headers(reply), (what, "a 400 of a limited key has headers")
    for messages in ([user(f"m{n}") for n in range(MAX_MESSAGES)], [user("d" * (MAX_PROMPT_CHARS - 500))]):
        hand_off({"model": "demo", "max_tokens": 1, "stream": True, "messages": messages}, key, CADDY)
    assert keyed.cli.usage_row(key)["requests_this_minute"] == 2, "a refused request was counted"
