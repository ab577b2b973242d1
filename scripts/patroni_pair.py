"""A Patroni pair of its own, run by scripts/ha.sh in the background on ports of its own (not make run-ha's): its
environment, its home, start, stop and its members' log tails. bench_ha.py's pair is one; Tests/e2e/ha_e2e.Pair,
the failover suites' pair, builds its probes and its placement on hosts on it.

The pair's data lives under /tmp, where the postgres user can reach it (pytest's own directories are 0700)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from handoff_stack import ROOT

HA_SCRIPT = ROOT / "scripts" / "ha.sh"
LOOPBACK = "127.0.0.1"


class PatroniPair:
    """pg1 and pg2 (Postgres on `pg_ports`, Patroni REST on `rest_ports`), a three-member etcd (`etcd_port` and the
    five after it) and HAProxy on `ha_port`, at `ha_address`. `settings` are more HANDOFF_HA_* for ha.sh (hosts and
    namespaces). `keep`, if given, is where the members' logs are copied when the pair stops; its home is deleted."""

    def __init__(
        self,
        ha_port: int,
        pg_ports: dict[str, int],
        rest_ports: dict[str, int],
        etcd_port: int,
        home_prefix: str,
        keep: Path | None = None,
        settings: dict[str, str] | None = None,
        ha_address: str = LOOPBACK,
    ):
        self.keep = keep
        self.ha_port, self.pg_ports, self.rest_ports = ha_port, pg_ports, rest_ports
        self.home = Path(tempfile.mkdtemp(prefix=home_prefix, dir="/tmp"))
        self.home.chmod(0o755)
        self.env = {
            **os.environ,
            "HANDOFF_HA_HOME": str(self.home),
            "HANDOFF_HA_PORT": str(ha_port),
            "HANDOFF_HA_PG1_PORT": str(pg_ports["pg1"]),
            "HANDOFF_HA_PG2_PORT": str(pg_ports["pg2"]),
            "HANDOFF_HA_PG1_REST": str(rest_ports["pg1"]),
            "HANDOFF_HA_PG2_REST": str(rest_ports["pg2"]),
            "HANDOFF_HA_ETCD_PORT": str(etcd_port),
            **(settings or {}),
        }
        self.admin_url = f"postgres://postgres@{ha_address}:{ha_port}/postgres"

    def ha(self, *args: str, timeout: float = 60) -> str:
        """scripts/ha.sh `args` on this pair; its stdout (RuntimeError, with the log tails, when it fails)."""
        done = subprocess.run(
            [str(HA_SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/ha.sh {' '.join(args)}: {done.stderr.strip()}\n{self.log_tails()}")
        return done.stdout

    def start(self) -> None:
        """Starts every member that is not running and waits for a primary with a synchronous standby."""
        self.ha("start", timeout=180)

    def stop(self) -> None:
        """Stops every member and deletes the home (its logs copied to `keep` first, if given)."""
        try:
            self.ha("stop", timeout=120)
        finally:
            if self.keep is not None:
                shutil.copytree(
                    self.home / "run", self.keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.pid")
                )
            shutil.rmtree(self.home, ignore_errors=True)

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for path in sorted((self.home / "run").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {path.name} -----\n" + "\n".join(tail))
        return "\n".join(parts)
