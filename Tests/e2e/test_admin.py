"""The operator's view: `handoff-api tasks list|show|cancel` and `handoff-api queue stats` against the session's
database, while the system runs; request ids and JSON logs; and `curl -X POST -L`, which keeps POST across the
hand-off."""

from __future__ import annotations

import json
import subprocess
import time

from handoff_e2e import CADDY_PORT, GOLDEN, README_BODY, Stream, iter_sse, request
from keys_e2e import admin_command


def admin(cluster, *args: str) -> str:
    done = admin_command(cluster.bin_dir / "handoff-api", cluster.database_url, *args)
    assert done.returncode == 0, f"`handoff-api {' '.join(args)}` exited {done.returncode}: {done.stderr[-1000:]}"
    return done.stdout


def queue(prompt: str, max_tokens: int | None = None) -> str:
    body = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    reply = request("POST", "/api/chat/completions", body)
    assert reply.status == 302, reply.body
    return reply.json()["task_id"]


def wait_status(cluster, task: str, wanted: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (shown := json.loads(admin(cluster, "tasks", "show", task, "--json")))["status"] not in wanted:
        assert time.monotonic() < deadline, f"task {task} still {shown['status']}"
        time.sleep(0.2)
    return shown


def test_tasks_list_show_and_cancel(cluster):
    short = queue("Tell me a three sentence bedtime story about a unicorn.")
    long = queue("Tell me a long story.", max_tokens=2000)  # 40 s of demo tokens: running when cancelled
    shown = wait_status(cluster, short, {"succeeded"})
    assert (shown["api"], shown["model"], shown["usage"]["total_tokens"], shown["error"]) == ("chat", "demo", 77, None)
    assert shown["events"] >= 1 and shown["worker_id"] and shown["attempts"] == 1

    listed = json.loads(admin(cluster, "tasks", "list", "--json", "--limit", "50"))
    assert {short, long} <= {task["id"] for task in listed}
    assert [task["created_at"] for task in listed] == sorted((task["created_at"] for task in listed), reverse=True)
    assert all(
        task["status"] == "succeeded"
        for task in json.loads(admin(cluster, "tasks", "list", "--status", "succeeded", "--json"))
    )
    assert short in admin(cluster, "tasks", "list")  # the text form names each task

    wait_status(cluster, long, {"running"})
    assert admin(cluster, "tasks", "cancel", long).startswith("cancelling")
    cancelled = wait_status(cluster, long, {"cancelled"})
    assert cancelled["usage"]["completion_tokens"] < 2000
    assert "nothing to cancel" in admin(cluster, "tasks", "cancel", long)
    unknown = admin_command(
        cluster.bin_dir / "handoff-api", cluster.database_url, "tasks", "show", "00000000-0000-0000-0000-000000000000"
    )
    assert unknown.returncode != 0 and "no task" in unknown.stderr


def test_queue_stats(cluster):
    task = queue("Tell me a long story.", max_tokens=500)
    wait_status(cluster, task, {"running"})
    stats = json.loads(admin(cluster, "queue", "stats", "--json"))
    assert stats["queued"] >= 0 and stats["oldest_queued_seconds"] >= 0 and stats["expired_leases"] >= 0
    assert sum(stats["running_by_worker"].values()) >= 1, stats
    admin(cluster, "tasks", "cancel", task)
    wait_status(cluster, task, {"cancelled"})
    stats = json.loads(admin(cluster, "queue", "stats", "--json", "--window", "600"))
    assert stats["recent_outcomes"].get("cancelled", 0) >= 1 and stats["window_seconds"] == 600, stats
    assert "queued" in admin(cluster, "queue", "stats")


def test_curl_x_post_keeps_post_across_the_handoff_and_still_streams():
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-N",
            "-X",
            "POST",
            "-L",
            "--max-time",
            "60",
            f"http://127.0.0.1:{CADDY_PORT}/api/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-d",
            README_BODY,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    stream = Stream(list(iter_sse(done.stdout.splitlines(keepends=True))), [])
    assert done.stdout.rstrip().endswith("data: [DONE]"), done.stdout[-300:]
    assert stream.text == GOLDEN


def test_a_request_id_is_returned_and_ties_the_request_to_its_task_in_the_api_log(cluster):
    reply = request(
        "POST",
        "/api/chat/completions",
        {"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Request-Id": "req-e2e-4711"},
    )
    assert reply.status == 302 and reply.headers["X-Request-Id"] == "req-e2e-4711"
    task = reply.json()["task_id"]
    deadline = time.monotonic() + 10
    while not [
        line
        for line in (cluster.log_dir / "api.log").read_text().splitlines()
        if "req-e2e-4711" in line and task in line.lower()
    ]:
        assert time.monotonic() < deadline, "no API log line names both the request id and its task"
        time.sleep(0.1)
    generated = request(
        "POST", "/api/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert generated.status == 404 and len(generated.headers["X-Request-Id"]) == 36, "errors carry a generated id too"


def test_json_logs_are_one_object_a_line(cluster):
    done = subprocess.run(
        [str(cluster.bin_dir / "handoff-api"), "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": cluster.database_url,
            "HANDOFF_LOG_FORMAT": "json",
            "HANDOFF_LOG_LEVEL": "debug",
        },
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert records and all({"time", "level", "process", "message"} <= record.keys() for record in records), done.stderr
    assert {record["process"] for record in records} == {"handoff.migrate"}
    refused = subprocess.run(
        [str(cluster.bin_dir / "handoff-api"), "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": cluster.database_url, "HANDOFF_LOG_FORMAT": "xml"},
    )
    assert refused.returncode != 0 and "HANDOFF_LOG_FORMAT=xml" in refused.stderr
