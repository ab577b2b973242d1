"""Behind a transaction-mode PgBouncer: the pools of every process go through it (`DATABASE_URL`), the LISTEN
connections of the worker and the replica go around it (`HANDOFF_LISTEN_DATABASE_URL`), and completions stream end
to end. LISTEN cannot work through transaction pooling (the server connection changes between transactions), so
without the second URL a deployment behind PgBouncer would run on its poll fallbacks alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import openai
import pytest
from handoff_e2e import wait_started
from handoff_stack import Ports, Stack, psql

BOUNCER_PORT = 25443
PORTS = Ports(caddy=17590, api=17591, sse=(17592,))


@pytest.fixture(scope="module")
def bounced_stack(cluster, tmp_path_factory):
    pgbouncer = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(pgbouncer):
        pytest.fail("pgbouncer is not installed: run scripts/install-deps.sh test", pytrace=False)
    admin = urllib.parse.urlsplit(cluster.admin_url)
    # Readable by the postgres user PgBouncer runs as (it refuses to run as root).
    directory = Path(f"/tmp/handoff-pgbouncer-{BOUNCER_PORT}")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o755)
    (directory / "userlist.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(f"""[databases]
* = host={admin.hostname} port={admin.port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {BOUNCER_PORT}
unix_socket_dir =
auth_type = trust
auth_file = {directory / "userlist.txt"}
admin_users = postgres
pool_mode = transaction
; The pools send statement_timeout as a start-up option, which PgBouncer does not pass on: with it ignored, the
; client-side deadline (HANDOFF_DB_TIMEOUT_MS) still holds, and a role-level statement_timeout can stand in.
ignore_startup_parameters = options
logfile = {directory / "pgbouncer.log"}
pidfile = {directory / "pgbouncer.pid"}
""")
    for path in directory.iterdir():
        path.chmod(0o644)
    shutil.chown(directory, "postgres")
    bouncer = subprocess.Popen(
        [pgbouncer, "-u", "postgres", str(directory / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    stack = Stack(
        cluster.admin_url, PORTS, tmp_path_factory.mktemp("pgbouncer-logs"), cluster.bin_dir, prefix="handoff_bounced"
    )
    stack.create_database()
    bounced = urllib.parse.urlunsplit(
        admin._replace(netloc=f"{admin.username}@127.0.0.1:{BOUNCER_PORT}", path=f"/{stack.database}")
    )
    try:
        # PgBouncer 1.18 in transaction mode cannot follow a named prepared statement across server connections.
        stack.start_services(
            settings={
                "DATABASE_URL": bounced,
                "HANDOFF_LISTEN_DATABASE_URL": stack.database_url,
                "HANDOFF_DB_PREPARE": "off",
            }
        )
        wait_started(stack)
        yield stack
    finally:
        stack.stop()
        bouncer.terminate()
        bouncer.wait(timeout=10)
        stack.drop_database()


def bouncer_clients() -> list[str]:
    """The application names of PgBouncer's client connections (its admin console's SHOW CLIENTS)."""
    rows = psql(f"postgres://postgres@127.0.0.1:{BOUNCER_PORT}/pgbouncer", "SHOW CLIENTS")
    return [field for line in rows.splitlines() for field in line.split("|") if field.startswith("handoff-")]


def metric(port: int, name: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return next(line.split()[-1] for line in lines if line.startswith(name + " "))


def test_pools_go_through_a_transaction_mode_pgbouncer_and_listen_goes_around_it(bounced_stack):
    stack = bounced_stack
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{PORTS.caddy}/api", api_key="unused", max_retries=0, timeout=30)
    for n in range(5):
        started = time.monotonic()
        stream = client.chat.completions.create(
            model="demo", stream=True, max_tokens=20, messages=[{"role": "user", "content": f"bounced {n}"}]
        )
        chunks = list(stream)
        assert chunks[-1].choices[0].finish_reason == "length", chunks[-1]
        assert time.monotonic() - started < 10
    through = bouncer_clients()
    assert {"handoff-api", "handoff-worker", f"handoff-sse-{PORTS.sse[0]}"} <= set(through), through
    assert not [name for name in through if name.endswith("-listener")], "LISTEN must not go through PgBouncer"
    listening = stack.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%-listener' "
        f"AND datname = '{stack.database}'"
    )
    assert listening == "2", listening
    assert metric(stack.worker_ports["worker"], "handoff_postgres_listener_connected") == "1.0"
    assert metric(PORTS.sse[0], "handoff_postgres_listener_connected") == "1.0"
