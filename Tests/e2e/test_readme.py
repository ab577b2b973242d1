"""The README's curl, run with the real curl binary against Caddy."""

import io
import json
import subprocess
import uuid

from handoff_e2e import CADDY_PORT, GOLDEN, README_BODY, Stream, assert_well_formed, iter_sse

URL = f"http://127.0.0.1:{CADDY_PORT}/api/chat/completions"


def curl(*options: str) -> str:
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "60", *options, URL, "-H", "Content-Type: application/json", "-d", README_BODY],
        capture_output=True,
        timeout=90,
    )
    assert done.returncode == 0, f"curl exited {done.returncode}: {done.stderr.decode(errors='replace')}"
    return done.stdout.decode()  # not text=True: that would turn the \r\n of HTTP headers into \n


def test_readme_curl_streams_the_golden_story(cluster):
    output = curl("-L", "-N")
    comments: list[str] = []
    stream = Stream(list(iter_sse(io.StringIO(output, newline=""), comments)), comments)

    assert_well_formed(stream)
    assert output.endswith("data: [DONE]\n\n")
    assert stream.text == GOLDEN
    *reply, finish, usage = stream.chunks
    assert all(c["usage"] is None for c in reply + [finish]), 'a chunk before the usage chunk lacks "usage": null'
    assert len(stream.content_chunks) == 67 and stream.content_chunks == reply[1:]
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["choices"][0]["delta"] == {}
    assert stream.finish_reasons == ["stop"]
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 10, "completion_tokens": 67, "total_tokens": 77}


def test_curl_without_follow_shows_the_handoff(cluster):
    head, _, body = curl("-i").partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}

    assert status_line.split()[1] == "302", status_line
    location = headers["location"]
    print(repr(head))
    assert location.startswith("/sse/chat/completions/") and "?token=" in location
    assert headers["content-type"].startswith("application/json")
    handoff = json.loads(body)
    assert set(handoff) == {"id", "task_id", "stream_url"}
    assert handoff["stream_url"] == location
    assert handoff["id"].startswith("chatcmpl-")
    task_id = str(uuid.UUID(handoff["task_id"]))
    assert location.startswith(f"/sse/chat/completions/{task_id}?")
    assert cluster.sql(f"SELECT count(*) FROM handoff_tasks WHERE id = '{task_id}'") == "1"
