"""What the API-key tests (test_keys.py, test_limits.py, test_charges.py) check of an answer: OpenAI's error document,
the 401 of a bad key, the 429 of a limit with its message and Retry-After, the `x-ratelimit-*` headers and their reset
durations; what an admission reserves; and a guard against a UTC minute ending in the middle of a test that counts per
minute."""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from handoff_e2e import Reply
from keys_e2e import Key

# A reset duration as OpenAI writes it: 12ms, 1s, 59.5s, 6m0s, 5h3m2s.
RESET_PATTERN = re.compile(r"^\d+(\.\d+)?(ms|s)$|^\d+m\d+(\.\d+)?s$|^\d+h\d+m\d+(\.\d+)?s$")
_DURATION = r"\d+h\d+m\d+(?:\.\d+)?s|\d+m\d+(?:\.\d+)?s|\d+(?:\.\d+)?(?:ms|s)"
RATE_LIMIT_MESSAGE = re.compile(
    r"^Rate limit reached for key '(?P<name>[^']+)'(?: and model '(?P<model>[^']*)')? on (?P<window>requests per min \(RPM\)|tokens per min \(TPM\)|"
    r"tokens per day \(TPD\)): Limit (?P<limit>\d+), Used (?P<used>\d+), Requested (?P<requested>\d+)\. "
    rf"Please try again in (?P<wait>{_DURATION})\."
)
# window -> (error type, how the message names it)
WINDOWS = {
    "RPM": ("requests", "requests per min (RPM)"),
    "TPM": ("tokens", "tokens per min (TPM)"),
    "TPD": ("tokens", "tokens per day (TPD)"),
}
RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


def openai_error(reply: Reply, status: int) -> dict:
    """The `error` object of an OpenAI error answer with `status`."""
    assert reply.status == status, (reply.status, reply.body[:500])
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.headers.get("Content-Type")
    document = json.loads(reply.body)
    assert set(document) == {"error"}, document
    error = document["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    return error


def assert_invalid_key(reply: Reply) -> str:
    """A 401 `invalid_api_key`; its message (the same for every bad key)."""
    error = openai_error(reply, 401)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "invalid_api_key"), error
    assert not rate_headers(reply), f"a 401 carries rate-limit headers: {rate_headers(reply)}"
    return error["message"]


def reservation(body: bytes | str, max_tokens: int | None, ceiling: int = 1024) -> int:
    """What an admission reserves: the prompt estimate (4 bytes a token, of the body as sent) plus the completion's
    budget (max_tokens, at most the ceiling). Not clamped here: the tests keep it under every limit."""
    size = len(body.encode() if isinstance(body, str) else body)
    return math.ceil(size / 4) + min(max_tokens if max_tokens is not None else ceiling, ceiling)


def assert_rate_limited(reply: Reply, window: str, key: Key, limit: int, requested: int | None = None) -> re.Match:
    """A 429 with OpenAI's body for `window` (RPM, TPM or TPD), Retry-After and retry-after-ms."""
    error = openai_error(reply, 429)
    kind, words = WINDOWS[window]
    assert (error["type"], error["param"], error["code"]) == (kind, None, "rate_limit_exceeded"), error
    match = RATE_LIMIT_MESSAGE.match(error["message"])
    assert match, f"not OpenAI's rate-limit message: {error['message']!r}"
    assert (match["name"], match["window"], int(match["limit"])) == (key.name, words, limit), error["message"]
    if requested is not None:
        assert int(match["requested"]) == requested, error["message"]
    retry_after = reply.headers.get("Retry-After")
    retry_after_ms = reply.headers.get("retry-after-ms")
    assert retry_after is not None and re.fullmatch(r"\d+", retry_after) and int(retry_after) >= 1, retry_after
    assert retry_after_ms is not None and re.fullmatch(r"\d+(\.\d+)?", retry_after_ms), retry_after_ms
    assert abs(int(retry_after) - float(retry_after_ms) / 1000) <= 1, (retry_after, retry_after_ms)
    return match


def rate_headers(reply: Reply) -> dict[str, str]:
    """The x-ratelimit-* headers the answer carries."""
    return {name: reply.headers[name] for name in RATE_HEADERS if reply.headers.get(name) is not None}


def assert_rate_headers(reply: Reply, requests: int | None, tokens: int | None) -> dict[str, Any]:
    """The x-ratelimit-* headers of a keyed answer: present exactly for the kinds of limit the key has, limits as
    configured, remaining within 0…limit, resets written as OpenAI writes durations. Returns them, numbers as int."""
    found = rate_headers(reply)
    values: dict[str, Any] = {}
    for kind, limit in (("requests", requests), ("tokens", tokens)):
        names = [f"x-ratelimit-{part}-{kind}" for part in ("limit", "remaining", "reset")]
        if limit is None:
            assert not any(name in found for name in names), f"{kind} headers without a {kind} limit: {found}"
            continue
        assert all(name in found for name in names), f"missing {kind} headers: {found}"
        assert int(found[names[0]]) == limit, found
        remaining = int(found[names[1]])
        assert 0 <= remaining <= limit, found
        assert RESET_PATTERN.match(found[names[2]]), f"reset not written like OpenAI's: {found[names[2]]!r}"
        values[names[0]], values[names[1]], values[names[2]] = limit, remaining, found[names[2]]
    return values


def reset_seconds(text: str) -> float:
    """`6m0s` -> 360.0, `12ms` -> 0.012, `5h3m2.5s` -> 18182.5"""
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d+)?)s", text)
    assert match, text
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)


def fresh_minute(needed: float) -> None:
    """Sleeps into the next UTC minute unless `needed` seconds are left in this one: per-minute counters are fixed
    UTC-minute windows, so a test that counts them must not straddle two."""
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.2)


def utc_minute() -> int:
    return int(time.time() // 60)
