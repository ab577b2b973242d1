"""The failover suites' machinery: a Patroni pair of its own (scripts/ha.sh with ports of its own, not make run-ha's),
probes that time what the pair and HAProxy do during a failover, and a client that records every answer to its POST.

test_ha.py's pair, on loopback: pg1 and pg2 (Postgres 25451/25452, Patroni REST 18008/18009), a three-member etcd
(25453-25458) and HAProxy on 25450, the one endpoint of the Handoff stack started on it (Caddy 24080, API 24081,
replicas 24082/24083). Tests/multihost places each member on a host of its own (a network namespace) instead. The
pair's data lives under /tmp, where the postgres user can reach it (pytest's own directories are 0700).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import subprocess
import threading
import time
from pathlib import Path

from faults import Client
from handoff_stack import Ports, psql, status
from patroni_pair import LOOPBACK, PatroniPair

HA_PORT = 25450
PG_PORTS = {"pg1": 25451, "pg2": 25452}
REST_PORTS = {"pg1": 18008, "pg2": 18009}
ETCD_PORT = 25453  # etcd1 25453/25454, etcd2 25455/25456, etcd3 25457/25458
PORTS = Ports(caddy=24080, api=24081, sse=(24082, 24083))
ADMIN_URL = f"postgres://postgres@127.0.0.1:{HA_PORT}/postgres"
NODES = ("pg1", "pg2")


def other(node: str) -> str:
    return "pg2" if node == "pg1" else "pg1"


def rest_status(address: str, port: int, path: str, timeout: float = 2) -> int:
    """What a Patroni REST API answers to GET `path` (0: no answer within `timeout`)."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


def members_seen(address: str, port: int) -> dict[str, dict]:
    """The members as a node's Patroni sees them, by name ({} when it does not answer)."""
    try:
        connection = http.client.HTTPConnection(address, port, timeout=2)
        connection.request("GET", "/cluster")
        members = json.loads(connection.getresponse().read())["members"]
        connection.close()
        return {member["name"]: member for member in members}
    except (OSError, http.client.HTTPException, ValueError, KeyError):
        return {}


class Pair(PatroniPair):
    """The pair, run by scripts/ha.sh in the background (patroni_pair.PatroniPair): start, fault, stop.

    On loopback unless given `hosts` (Tests/multihost's hosts.Hosts) and `placement`, the host of each member (etcd1-3,
    pg1, pg2, haproxy): each member then listens on its host's address and runs in its network namespace, Postgres
    trusts the hosts' subnet, and every probe runs on a host too: a node's own REST API is asked from the node's host
    (an isolated node is still heard), everything else from HAProxy's."""

    def __init__(
        self,
        keep: Path,
        ha_port: int = HA_PORT,
        pg_ports: dict[str, int] = PG_PORTS,
        rest_ports: dict[str, int] = REST_PORTS,
        etcd_port: int = ETCD_PORT,
        hosts=None,
        placement: dict[str, str] | None = None,
        home_prefix: str = "handoff-ha-e2e-",
    ):
        self.hosts, self.placement = hosts, placement or {}
        settings = {}
        if hosts is not None:
            settings["HANDOFF_HA_TRUSTED"] = f"{hosts.subnet}.0/24"
            for member, host in self.placement.items():
                name = "" if member == "haproxy" else f"_{member.upper()}"
                settings[f"HANDOFF_HA{name}_HOST"] = hosts.address(host)
                settings[f"HANDOFF_HA_NETNS_{member.upper()}"] = hosts.namespace(host)
        super().__init__(
            ha_port,
            pg_ports,
            rest_ports,
            etcd_port,
            home_prefix,
            keep=keep,  # where the members' logs are copied when the pair stops
            settings=settings,
            ha_address=self.address("haproxy"),
        )

    def address(self, member: str) -> str:
        return LOOPBACK if self.hosts is None else self.hosts.address(self.placement[member])

    def on(self, member: str, function, *args):
        """`function(*args)` on `member`'s host (here, on loopback)."""
        if self.hosts is None:
            return function(*args)
        return self.hosts.call(self.placement[member], function, *args)

    def rest(self, node: str, path: str, timeout: float = 2, seen_from: str = "haproxy") -> int:
        """What the node's Patroni answers to GET `path`, asked from `seen_from`'s host (0: no answer)."""
        return self.on(seen_from, rest_status, self.address(node), self.rest_ports[node], path, timeout)

    def cluster(self, node: str) -> dict[str, dict]:
        """The members as `node`'s Patroni sees them, by name ({} when it does not answer)."""
        return self.on("haproxy", members_seen, self.address(node), self.rest_ports[node])

    def routed(self) -> str | None:
        """The node HAProxy leads a new connection to, if it is a primary (None: no answer, or a replica)."""
        url = f"{self.admin_url}?connect_timeout=2"
        try:
            port = self.on("haproxy", psql, url, "SELECT current_setting('port') WHERE NOT pg_is_in_recovery()", 4)
        except (RuntimeError, subprocess.TimeoutExpired):
            return None
        return next((node for node, pg_port in self.pg_ports.items() if str(pg_port) == port), None)

    def primary(self) -> str:
        """The node whose Patroni answers 200 to /primary (exactly one must)."""
        primaries = [node for node in NODES if self.rest(node, "/primary") == 200]
        assert len(primaries) == 1, f"primaries: {primaries}"
        return primaries[0]

    def pids(self, node: str) -> list[int]:
        return [int(pid) for pid in self.ha("pids", node).split()]


def wait_for(what: str, probe, timeout: float, interval: float = 0.1) -> float:
    """Polls `probe` until it is true; returns the time.monotonic() it first was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return time.monotonic()
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


class Watch:
    """Samples, every `interval` seconds, each in a thread of its own, what a failover changes: what each node's
    Patroni answers to /primary (asked from the node's own host), where HAProxy leads, and what /readyz says at each
    of `ready`'s (address, port): the API first, then the replicas. Each sample is (time, value)."""

    def __init__(self, pair: Pair, ready: list[tuple[str, int]], interval: float = 0.2):
        self.pair = pair
        self.targets = ready
        self.interval = interval
        self.primary: dict[str, list[tuple[float, int]]] = {node: [] for node in NODES}
        self.routed: list[tuple[float, str | None]] = []
        self.ready: list[tuple[float, tuple[int, ...]]] = []
        self.stopping = threading.Event()
        probes = [*NODES, "routed", "ready"]
        self.threads = [threading.Thread(target=self.run, args=(probe,), daemon=True) for probe in probes]

    def start(self) -> "Watch":
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def run(self, probe: str) -> None:
        while not self.stopping.is_set():
            now = time.monotonic()
            if probe in NODES:
                self.primary[probe].append((now, self.pair.rest(probe, "/primary", timeout=0.5, seen_from=probe)))
            elif probe == "routed":
                self.routed.append((now, self.pair.routed()))
            else:
                codes = self.pair.on("haproxy", lambda: tuple(readyz(*target) for target in self.targets))
                self.ready.append((now, codes))
            self.stopping.wait(self.interval)

    def both_primary(self) -> list[float]:
        """The moments both nodes answered /primary 200 within one sampling interval of each other."""
        pg1 = [at for at, code in self.primary["pg1"] if code == 200]
        pg2 = [at for at, code in self.primary["pg2"] if code == 200]
        return [at for at in pg1 if any(abs(at - other) < self.interval for other in pg2)]

    def first(self, samples: list, after: float, test) -> float | None:
        return next((at for at, value in samples if at >= after and test(value)), None)


def readyz(address: str, port: int) -> int:
    try:
        return status(port, "/readyz", host=address)
    except (OSError, http.client.HTTPException):
        return 0


@dataclasses.dataclass
class Attempt:
    at: float
    status: int  # 0: no answer (connection refused, reset, timed out)
    retry_after: str | None
    body: bytes


class RecordingClient(Client):
    """A client whose POST is retried like openai-python retries (on 503 and on no answer), recording every answer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attempts: list[Attempt] = []

    def post(self, deadline: float) -> None:
        while True:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                connection.request(
                    "POST", "/api/chat/completions", json.dumps(self.body), {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                body = response.read()
                self.attempts.append(
                    Attempt(time.monotonic(), response.status, response.getheader("Retry-After"), body)
                )
                if response.status == 302:
                    self.location = response.getheader("Location")
                    self.task_id = json.loads(body)["task_id"]
                    return
                if response.status != 503:
                    return  # the test reports it: only 302 and 503 are allowed
            except (OSError, http.client.HTTPException) as error:
                self.attempts.append(Attempt(time.monotonic(), 0, None, repr(error).encode()))
            finally:
                connection.close()
            if time.monotonic() > deadline:
                return
            time.sleep(0.25)
