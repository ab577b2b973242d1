"""What the API-key tests (test_keys.py, test_limits.py, test_charges.py) share: the ports and input limits of the
keyed API servers (the `keyed` fixture in conftest.py starts them, and gives a `Keyed`), the `handoff-api keys` admin
command, and keyed requests and streams on any port. What they check of an answer (401, 429, `x-ratelimit-*`) is in
limits_e2e.py.

Everything is bounded in time, as in handoff_e2e: sockets time out, streams have deadlines, the command has a timeout.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

from handoff_e2e import Reply, connect, iter_sse, request
from handoff_stack import Stack

# A key as `keys create` prints it: hk- and 43 base64url characters (32 random bytes).
KEY_PATTERN = re.compile(r"hk-[A-Za-z0-9_-]{43}")
READ_TIMEOUT = 20  # seconds a stream read may wait; the demo model writes a token every 20 ms

# The keyed API servers of the `keyed` fixture (conftest.py), the Caddy in front of them, and their input limits.
API_PORTS = (18084, 18085)
CADDY = 18086
MAX_MESSAGES = 8
MAX_PROMPT_CHARS = 2000
SEED = [{"role": "user", "content": "Tell me a three sentence bedtime story about a unicorn."}]

# Every key created or presented in this session, by any module (they share this module), for the check that no log
# file ever contains one (test_keys.py's test_no_log_file_contains_a_key, which conftest.py runs last).
KEYS_SEEN: list[str] = []


def demo(content: str, max_tokens: int | None = None, stream: bool = True, **fields) -> dict:
    body = {"model": "demo", "stream": stream, "messages": [{"role": "user", "content": content}], **fields}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def encoded(body: dict) -> bytes:
    """The exact bytes a test sends, so that it can compute the reservation (4 bytes a token)."""
    return json.dumps(body).encode()


def unique(label: str) -> str:
    """A key name no other test uses (names are per database, and the session shares one)."""
    return f"{label}-{secrets.token_hex(3)}"


@dataclasses.dataclass(frozen=True)
class Key:
    id: str
    name: str
    secret: str
    stdout: str  # what `keys create` printed

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.secret)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def admin_command(binary: Path, database_url: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """`handoff-api <args>` as an operator runs it: DATABASE_URL, no other Handoff setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_") and k != "DATABASE_URL"}
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        [str(binary), *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


class KeysCLI:
    """`handoff-api keys …` against one database, as an operator runs it (DATABASE_URL, nothing else)."""

    def __init__(self, binary: Path, database_url: str):
        self.binary = binary
        self.database_url = database_url

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return admin_command(self.binary, self.database_url, "keys", *args, timeout=timeout)

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        if done.returncode != 0:
            raise AssertionError(
                f"`handoff-api keys {' '.join(args)}` exited {done.returncode}: "
                f"stdout {done.stdout[-1000:]!r} stderr {done.stderr[-1000:]!r}"
            )
        return done.stdout

    def create(self, name: str, **options: int | str) -> Key:
        """`keys create --name NAME --requests-per-minute N …` (options by their flag, with _ for -)."""
        args = ["create", "--name", name]
        for option, value in options.items():
            args += [f"--{option.replace('_', '-')}", str(value)]
        stdout = self.ok(*args)
        lines = stdout.rstrip("\n").split("\n")
        secret = lines[-1]
        assert KEY_PATTERN.fullmatch(secret), f"the last line of `keys create` is not a key alone: {lines[-1]!r}"
        KEYS_SEEN.append(secret)
        ids = [m.group(1) for line in lines if (m := re.fullmatch(r"id:\s*([0-9a-fA-F-]{36})\s*", line))]
        assert len(ids) == 1, f"`keys create` printed no single `id: <uuid>` line: {stdout!r}"
        return Key(ids[0].lower(), name, secret, stdout)

    def list(self) -> list[dict]:
        return json.loads(self.ok("list", "--json"))

    def listed(self, key: Key) -> dict:
        rows = [row for row in self.list() if row["id"].lower() == key.id]
        assert len(rows) == 1, f"`keys list --json` has {len(rows)} rows for {key.id}"
        return rows[0]

    def revoke(self, id_or_name: str) -> str:
        return self.ok("revoke", id_or_name)

    def limit(self, id_or_name: str, model: str | None = None, **limits: int) -> str:
        args = ["limit", id_or_name] + (["--model", model] if model is not None else [])
        for option, value in limits.items():
            args += [f"--{option.replace('_', '-')}", str(value)]
        return self.ok(*args)

    def usage(self, id_or_name: str | None = None) -> list[dict]:
        return json.loads(self.ok("usage", *([id_or_name] if id_or_name else []), "--json"))

    def usage_row(self, key: Key, model: str = "") -> dict:
        rows = [row for row in self.usage(key.id) if row["id"].lower() == key.id and row["model"] == model]
        assert len(rows) == 1, f"`keys usage {key.id}` has {len(rows)} rows for model {model!r}: {rows}"
        return rows[0]


@dataclasses.dataclass
class Keyed:
    """What the `keyed` fixture gives: the keys command on the session's database, and the session's stack."""

    cli: KeysCLI
    cluster: Stack

    def key(self, label: str, **options) -> Key:
        return self.cli.create(unique(label), **options)


# ----- requests ------------------------------------------------------------------------------------------------


def post(
    path: str, body: bytes | str | dict | None, key: Key | str | None, port: int, headers: dict | None = None
) -> Reply:
    """A POST with `key` as Bearer (a Key, a raw Authorization value's secret, or None for no header)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        all_headers.update(bearer(key.secret if isinstance(key, Key) else key))
    return request("POST", path, body, all_headers, port=port)


@dataclasses.dataclass
class Handoff:
    """A 302 answer of POST /api/chat/completions."""

    reply: Reply

    @property
    def location(self) -> str:
        return self.reply.headers["Location"]

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.location).path

    @property
    def token(self) -> str:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.location).query)["token"][0]

    @property
    def task_id(self) -> str:
        return self.reply.json()["task_id"]

    @property
    def completion_id(self) -> str:
        return self.reply.json()["id"]


def hand_off(body: bytes | dict, key: Key, port: int) -> Handoff:
    reply = post("/api/chat/completions", body, key, port)
    assert reply.status == 302, f"POST /api/chat/completions on {port} answered {reply.status}: {reply.body[:500]!r}"
    handoff = Handoff(reply)
    assert handoff.location == reply.json()["stream_url"], (handoff.location, reply.body)
    return handoff


class OpenStream:
    """A GET of an SSE URL (or a POST whose answer is a stream: `body`), read as far as a test wants; a context
    manager that closes the connection."""

    def __init__(
        self, path: str, headers: dict | None, port: int, timeout: float = 60, body: bytes | dict | None = None
    ):
        self.conn = connect(port, timeout=READ_TIMEOUT)
        all_headers = {"Accept": "text/event-stream", **(headers or {})}
        if body is None:
            self.conn.request("GET", path, headers=all_headers)
        else:
            payload = json.dumps(body).encode() if isinstance(body, dict) else body
            self.conn.request("POST", path, body=payload, headers={"Content-Type": "application/json", **all_headers})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.body = b"" if self.status == 200 else self.response.read()
        self.events = iter_sse(self.response, deadline=time.monotonic() + timeout)
        self.ids: list[int] = []
        self.chunks: list[dict] = []
        self.done = False

    def __enter__(self) -> "OpenStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Hangs up for real: the response holds the socket too (a client that leaves must be seen leaving)."""
        self.response.close()
        self.conn.close()

    def _next(self) -> bool:
        """Reads one event; False at [DONE]."""
        try:
            event = next(self.events)
        except StopIteration:
            raise AssertionError(f"the stream ended without [DONE] after {len(self.chunks)} chunks") from None
        if event["data"] == "[DONE]":
            self.done = True
            return False
        if event["id"] is not None:
            self.ids.append(int(event["id"]))
        self.chunks.append(json.loads(event["data"]))
        return True

    def read_events(self, count: int) -> None:
        while len(self.ids) < count:
            assert self._next(), f"the stream ended after {len(self.ids)} events"

    def read_content(self, count: int) -> None:
        while len(content_chunks(self.chunks)) < count:
            assert self._next(), f"the stream ended after {len(content_chunks(self.chunks))} content chunks"

    def read_to_end(self) -> None:
        while self._next():
            pass

    @property
    def errors(self) -> list[dict]:
        return [chunk["error"] for chunk in self.chunks if "error" in chunk]

    @property
    def text(self) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in self.chunks if c.get("choices"))

    @property
    def finish_reasons(self) -> list[str]:
        return [
            c["choices"][0]["finish_reason"]
            for c in self.chunks
            if c.get("choices") and c["choices"][0].get("finish_reason") is not None
        ]


def content_chunks(chunks: list[dict]) -> list[dict]:
    """Chunks carrying a reply token: not the role chunk, not an error, not the usage chunk."""
    return [
        c
        for c in chunks
        if c.get("choices") and "role" not in c["choices"][0]["delta"] and "content" in c["choices"][0]["delta"]
    ]


def read_whole(path: str, headers: dict | None, port: int, timeout: float = 60) -> OpenStream:
    """GETs an SSE URL, expects 200 and reads it to [DONE]."""
    with OpenStream(path, headers, port, timeout) as stream:
        assert stream.status == 200, f"GET {path} answered {stream.status}: {stream.body[:500]!r}"
        stream.read_to_end()
    return stream


def wait_ended(stack, task_id: str, timeout: float = 20) -> tuple[str, dict | None]:
    """Until the task has left queued/running; its final status and recorded usage (None when none)."""
    deadline = time.monotonic() + timeout
    while (status := stack.sql(f"SELECT status FROM handoff_tasks WHERE id = '{task_id}'")) in ("queued", "running"):
        assert time.monotonic() < deadline, f"task {task_id} still {status} after {timeout} s"
        time.sleep(0.05)
    usage = stack.sql(f"SELECT usage FROM handoff_tasks WHERE id = '{task_id}'")
    return status, (json.loads(usage) if usage else None)


# ----- ports ---------------------------------------------------------------------------------------------------


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def keyed_one_token(key: Key, port: int) -> bool:
    """A one-token stream through `port` with `key`: POST /api, follow the 302 with the key, read to [DONE]."""
    body = {"model": "demo", "stream": True, "max_tokens": 1, "messages": [{"role": "user", "content": "ready?"}]}
    reply = post("/api/chat/completions", body, key, port)
    if reply.status != 302:
        return False
    conn = connect(port, timeout=10)
    try:
        conn.request("GET", reply.headers["Location"], headers=key.auth)
        response = conn.getresponse()
        return response.status == 200 and response.read().endswith(b"data: [DONE]\n\n")
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
