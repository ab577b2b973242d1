"""The stacks `make bench` measures: its own Postgres cluster (port 26439, pg_stat_statements loaded, commit
timestamps on), a fresh stack per scenario on ports 28080-28083 (release binaries, Caddy in front, two SSE
replicas), and `handoff-bench`, the load generator each scenario runs against them. All below the ephemeral port
range (scripts/test.sh says why), so a running `make run` is untouched."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from handoff_stack import CADDY, ROOT, Ports, Stack, psql

PG_PORT = 26439  # below the ephemeral port range (scripts/test.sh says why)
PORTS = Ports(caddy=28080, api=28081, sse=(28082, 28083))
ADMIN_URL = f"postgres://postgres@127.0.0.1:{PG_PORT}/postgres"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    caddy = subprocess.run([str(CADDY), "version"], capture_output=True, text=True).stdout.split(" ")[0].strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "date": datetime.date.today().isoformat(),
        "commit": commit or "?",
        "caddy": caddy or "?",
    }


def bench(bin_dir: Path, *args: str) -> dict:
    """Runs one scenario of handoff-bench; its progress goes to our terminal, its JSON result comes back."""
    done = subprocess.run([str(bin_dir / "handoff-bench"), *args], stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


class Session:
    """One fresh stack per scenario, so no scenario inherits another's memory or queue. `baseline_bin_dir` holds the
    binaries the cost scenario compares this commit's (`bin_dir`) against."""

    def __init__(self, bin_dir: Path, log_root: Path, baseline_bin_dir: Path | None = None):
        self.bin_dir = bin_dir
        self.log_root = log_root
        self.baseline_bin_dir = baseline_bin_dir or bin_dir
        self.count = 0

    def stack(
        self,
        worker: bool,
        worker_settings: dict[str, str],
        bin_dir: Path | None = None,
        caddy: bool = True,
        admin_url: str = ADMIN_URL,
        ports: Ports = PORTS,
        **settings: str,
    ) -> Stack:
        """A stack on a database of its own in the cluster at `admin_url`, from `bin_dir`'s binaries (this commit's
        unless told), without Caddy when told (a Caddy on the same ports must already run)."""
        self.count += 1
        log_dir = self.log_root / f"stack-{self.count}"
        log_dir.mkdir()
        stack = Stack(admin_url, ports, log_dir, bin_dir or self.bin_dir, prefix="handoff_bench")
        stack.create_database()
        try:
            stack.start_services(
                settings={"HANDOFF_LOG_LEVEL": "warning", **settings},
                worker_settings={"HANDOFF_DEMO_TOKEN_DELAY_MS": "0", **worker_settings},
                worker=worker,
                caddy=caddy,
            )
            stack.wait_healthy(time.monotonic() + 60)
        except Exception:
            print(stack.log_tails(), file=sys.stderr)
            stack.stop()
            stack.drop_database()
            raise
        time.sleep(2.5)  # Caddy's active health checks (every 2 s) must have seen both replicas
        return stack

    @contextlib.contextmanager
    def running(self, worker: bool, worker_settings: dict[str, str] | None = None, **options) -> Iterator[Stack]:
        """`stack(...)` for the time of a with block: then stopped, its database dropped, its logs' tails printed
        if the block failed."""
        stack = self.stack(worker, worker_settings or {}, **options)
        try:
            yield stack
        except Exception:
            print(stack.log_tails(), file=sys.stderr)
            raise
        finally:
            stack.stop()
            stack.drop_database()

    def run(self, worker: bool, body, worker_settings: dict[str, str] | None = None, **settings: str):
        with self.running(worker, worker_settings, **settings) as stack:
            return body(stack)


@contextlib.contextmanager
def cluster() -> Iterator[None]:
    """The bench's own Postgres cluster, reset and started, with pg_stat_statements; stopped at the end."""
    env = {
        **os.environ,
        "HANDOFF_PG_PORT": str(PG_PORT),
        "HANDOFF_PG_OPTIONS": "-c shared_preload_libraries=pg_stat_statements -c track_commit_timestamp=on",
    }
    env.pop("HANDOFF_PGDATA", None)
    subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "reset"], env=env, check=True)
    subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "start"], env=env, check=True)
    psql(ADMIN_URL, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    try:
        yield
    finally:
        subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "stop"], env=env, check=True)
