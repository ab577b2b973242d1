"""Operations: a real Prometheus scrapes every process of the session's stack and sees the counters move as
completions stream (with the rules shipped in ops/prometheus loaded and healthy); `/readyz` fails on every
process within its deadline when Postgres stops, and recovers when it is back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request

import openai
import pytest
from handoff_e2e import API_PORT, CADDY_PORT, SSE_PORTS, wait_started
from handoff_stack import ROOT, Ports, Stack, wait_until

PROMETHEUS_PORT = 18094
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
COMPLETIONS = 4


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Prometheus:
    def __init__(self, port: int):
        self.port = port

    def query(self, expr: str) -> list[dict]:
        status, body = get(self.port, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert status == 200, body
        return json.loads(body)["data"]["result"]

    def scalar(self, expr: str) -> float:
        """The value of a query that sums to one series (0 when it has none yet)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0

    def wait_for(self, what: str, probe, timeout: float = 20):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = probe()
            except OSError as error:  # Prometheus not listening yet
                last = error
            else:
                if last:
                    return last
            time.sleep(0.5)
        raise AssertionError(f"Prometheus never saw {what} (last: {last!r})")


@pytest.fixture(scope="module")
def prometheus(cluster, tmp_path_factory):
    """Debian's Prometheus, scraping the session's API, worker and SSE replicas every second, with the repo's rules."""
    directory = tmp_path_factory.mktemp("prometheus")
    targets = {
        "handoff-api": [API_PORT],
        "handoff-worker": [cluster.worker_ports["worker"]],
        "handoff-sse": list(SSE_PORTS),
    }
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "ops" / "prometheus" / "rules.yml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in ports]}]}
            for job, ports in targets.items()
        ],
    }
    (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    log = open(directory / "prometheus.log", "ab")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    server = Prometheus(PROMETHEUS_PORT)
    try:
        server.wait_for("every target up", lambda: len(server.query("up == 1")) == 4 or None, timeout=60)
        yield server
    except AssertionError as error:
        raise pytest.fail.Exception(f"{error}\n{(directory / 'prometheus.log').read_text()[-3000:]}", pytrace=False)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_shipped_rules_and_config_pass_promtool():
    for args in (["check", "rules", "ops/prometheus/rules.yml"], ["check", "config", "ops/prometheus/prometheus.yml"]):
        done = subprocess.run(["promtool", *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_sees_completions_move_the_counters(cluster, prometheus):
    demo = 'model="demo-metered"'
    before = {
        "succeeded": prometheus.scalar('sum(handoff_tasks_total{outcome="succeeded"})'),
        "handoffs": prometheus.scalar(
            'sum(handoff_http_requests_total{job="handoff-api",route="/api/chat/completions",'
            'method="POST",status="302"})'
        ),
        "handoff_seconds": prometheus.scalar("sum(handoff_handoff_duration_seconds_count)"),
        "waits": prometheus.scalar("sum(handoff_task_queue_wait_seconds_count)"),
        "written": prometheus.scalar("sum(handoff_stream_events_written_total)"),
        "sent": prometheus.scalar("sum(handoff_sse_events_sent_total)"),
        "first": prometheus.scalar('sum(handoff_sse_first_event_seconds_count{api="chat"})'),
    }
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{CADDY_PORT}/api", api_key="unused", max_retries=0, timeout=60)
    completion_tokens = prompt_tokens = chunks = 0
    for n in range(COMPLETIONS):
        stream = client.chat.completions.create(
            model="demo-metered",
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=8 + n,
            messages=[{"role": "user", "content": f"count me {n}"}],
        )
        for chunk in stream:
            chunks += 1
            if chunk.usage:
                completion_tokens += chunk.usage.completion_tokens
                prompt_tokens += chunk.usage.prompt_tokens
    failover = client.chat.completions.create(model="failover-metered", messages=[{"role": "user", "content": "hi"}])
    assert failover.choices[0].message.content

    # Exact for the models only this test uses.
    prometheus.wait_for(
        "the tokens of the metered model",
        lambda: (
            prometheus.scalar(f'sum(handoff_tokens_total{{{demo},kind="completion"}})') == completion_tokens or None
        ),
    )
    assert prometheus.scalar(f'sum(handoff_tokens_total{{{demo},kind="prompt"}})') == prompt_tokens
    prometheus.wait_for(
        "the failover",
        lambda: (
            (
                prometheus.scalar('sum(handoff_upstream_requests_total{model="failover-metered"})'),
                prometheus.scalar('sum(handoff_upstream_errors_total{model="failover-metered"})'),
                prometheus.scalar('sum(handoff_upstream_failovers_total{model="failover-metered"})'),
            )
            == (2, 1, 1)
            or None
        ),
    )
    # At least ours for the rest: other tests' tasks may end meanwhile.
    moved = {
        "succeeded": ('sum(handoff_tasks_total{outcome="succeeded"})', COMPLETIONS + 1),
        "handoffs": (
            'sum(handoff_http_requests_total{job="handoff-api",route="/api/chat/completions",'
            'method="POST",status="302"})',
            COMPLETIONS + 1,
        ),
        "handoff_seconds": ("sum(handoff_handoff_duration_seconds_count)", COMPLETIONS + 1),
        "waits": ("sum(handoff_task_queue_wait_seconds_count)", COMPLETIONS + 1),
        "written": ("sum(handoff_stream_events_written_total)", chunks),
        "sent": ("sum(handoff_sse_events_sent_total)", chunks),
        "first": ('sum(handoff_sse_first_event_seconds_count{api="chat"})', COMPLETIONS),
    }
    for name, (expr, least) in moved.items():
        prometheus.wait_for(f"{name} move by {least}", lambda: prometheus.scalar(expr) - before[name] >= least or None)

    # Every process is ready, listens where it should, and says how big its pool is.
    assert {r["metric"]["job"] for r in prometheus.query("handoff_ready == 1")} == {
        "handoff-api",
        "handoff-worker",
        "handoff-sse",
    }
    assert len(prometheus.query("handoff_ready == 1")) == 4
    listening = prometheus.query("handoff_postgres_listener_connected == 1")
    assert sorted(r["metric"]["job"] for r in listening) == ["handoff-sse", "handoff-sse", "handoff-worker"], listening
    assert len(prometheus.query("handoff_postgres_pool_size > 0")) == 4
    assert prometheus.query("handoff_queue_depth") and prometheus.query("handoff_sse_open_streams")

    # The shipped rules load, evaluate without errors, and record.
    groups = json.loads(get(PROMETHEUS_PORT, "/api/v1/rules")[1])["data"]["groups"]
    assert {g["name"] for g in groups} == {"handoff-recording", "handoff-alerts"}
    prometheus.wait_for(
        "every rule evaluated", lambda: all(r.get("health") == "ok" for g in groups for r in g["rules"]) or None
    )
    prometheus.wait_for("a recorded hand-off p99", lambda: prometheus.query("handoff:handoff_duration_seconds:p99_5m"))
    firing = prometheus.query('ALERTS{alertstate="firing"}')
    assert not firing, firing


def test_metrics_never_name_a_task_or_a_key(cluster):
    for port in (API_PORT, cluster.worker_ports["worker"], *SSE_PORTS):
        status, text = get(port, "/metrics")
        assert status == 200 and "handoff_http_requests_total" in text, (port, status, text[:300])
        assert not UUID.search(text), f"a task id in the metrics of port {port}: {UUID.search(text).group()}"
        assert "hk-" not in text


READY = Ports(caddy=17390, api=17391, sse=(17392,))
READY_PG_PORT = 25442
READY_DEADLINE_MS = 500
RETRIES_SEEN = 3  # failed attempts (one every 500 ms) each process logs before the test looks


def postgres(command: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "postgres.sh"), command],
        check=True,
        timeout=60,
        capture_output=True,
        env={**os.environ, "HANDOFF_PG_PORT": str(READY_PG_PORT)},
    )


@pytest.fixture(scope="module")
def own_postgres_stack(cluster, tmp_path_factory):
    """A stack on a Postgres cluster of its own, which the tests stop and start. Its processes start while that
    Postgres is down (`test_processes_started_before_postgres_wait_for_it` brings it up)."""
    postgres("init")
    postgres("start")
    stack = Stack(
        f"postgres://postgres@127.0.0.1:{READY_PG_PORT}/postgres",
        READY,
        tmp_path_factory.mktemp("readiness-logs"),
        cluster.bin_dir,
        prefix="handoff_ready",
    )
    stack.create_database()
    postgres("stop")
    try:
        stack.start_services(settings={"HANDOFF_READY_DEADLINE_MS": str(READY_DEADLINE_MS)})
        yield stack
    finally:
        stack.stop()
        postgres("start")
        stack.drop_database()
        postgres("stop")


def test_processes_started_before_postgres_wait_for_it(own_postgres_stack):
    """No start-up order: every process retries Postgres (for 60 s), so a host that boots its services before its
    database comes up whole."""
    stack = own_postgres_stack
    # Each process has failed to reach Postgres and gone on waiting, several times: one that gave up, or served
    # without it, would have by now.
    logs = [stack.log_dir / f"{name}.log" for name in ("api", "worker", f"sse-{stack.ports.sse[0]}")]
    wait_until(
        f"{RETRIES_SEEN} failed attempts on Postgres in each process's log",
        stack,
        time.monotonic() + 30,
        lambda: all(log.read_text(errors="replace").count("waiting for Postgres") >= RETRIES_SEEN for log in logs),
    )
    stack.check_alive()
    # Waiting, not serving: each migrates before it listens.
    for port in (stack.ports.api, stack.ports.sse[0], stack.worker_ports["worker"]):
        with pytest.raises(OSError):
            get(port, "/healthz")
    postgres("start")
    wait_started(stack, routed=False)
    wait_until("a stream through Caddy", stack, time.monotonic() + 20, lambda: stream_through(stack.ports.caddy))


def test_readyz_fails_within_its_deadline_when_postgres_stops_and_recovers(own_postgres_stack):
    stack = own_postgres_stack
    ports = {"api": stack.ports.api, "worker": stack.worker_ports["worker"], "sse": stack.ports.sse[0]}

    def statuses(path: str) -> dict[str, int]:
        return {name: get(port, path)[0] for name, port in ports.items()}

    wait_until("every process ready", stack, time.monotonic() + 30, lambda: set(statuses("/readyz").values()) == {200})
    postgres("stop")
    stopped = time.monotonic()
    wait_until("every process not ready", stack, stopped + 10, lambda: set(statuses("/readyz").values()) == {503})
    took = time.monotonic() - stopped
    # A check runs every second and gives Postgres READY_DEADLINE_MS to answer.
    assert took < 1 + READY_DEADLINE_MS / 1000 + 1, f"/readyz took {took:.1f} s to fail"
    for name, port in ports.items():
        status, body = get(port, "/readyz")
        error = json.loads(body)["error"]
        assert error["code"] == "not_ready" and error["type"] == "server_error", (name, body)
        assert "Postgres" in error["message"] or "LISTEN" in error["message"], (name, body)
    assert set(statuses("/healthz").values()) == {200}, "alive all the same"

    postgres("start")
    started = time.monotonic()
    wait_until("every process ready again", stack, started + 20, lambda: set(statuses("/readyz").values()) == {200})
    print(
        f"/readyz: 503 on every process {took:.2f} s after Postgres stopped, 200 again "
        f"{time.monotonic() - started:.2f} s after it started"
    )
    # And it serves: a completion streams end to end through Caddy, whose health checks use /readyz.
    wait_until("a stream through Caddy", stack, time.monotonic() + 20, lambda: stream_through(stack.ports.caddy))


def stream_through(caddy_port: int) -> bool:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{caddy_port}/api", api_key="unused", max_retries=0, timeout=10)
    reply = client.chat.completions.create(model="demo", max_tokens=3, messages=[{"role": "user", "content": "back?"}])
    return reply.choices[0].finish_reason == "length"
