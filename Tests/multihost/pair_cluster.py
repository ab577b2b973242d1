"""cluster.py's hosts with Postgres as a Patroni pair (issue 23): the members of make run-ha's pair (scripts/ha.sh,
deploy/ha), each on a host, and every Handoff process, pools and LISTEN connections alike, reaching the primary
through HAProxy on B:

    A 10.77.0.11  pg1: Patroni + Postgres :25461 (REST :18018), and etcd1 (:25463, peers :25464)
    G 10.77.0.17  pg2: Patroni + Postgres :25462 (REST :18019), and etcd2 (:25465, peers :25466)
    W 10.77.0.18  etcd3 (:25467, peers :25468), the witness: no Postgres, so losing A or G costs no quorum
    B 10.77.0.12  HAProxy :25460, the one Postgres endpoint, beside the API and the worker
    C, D, E, F    the replicas, Caddy and the clients, as in cluster.py (C and D reach HAProxy over the network)

One HAProxy, on B: the API and the worker on B are the one writer, nothing without it anyway, so an HAProxy there is
no new single point of failure, and its view of the pair (where it leads) is the one every process shares. One
HAProxy per application host (a sidecar on loopback) is the other usual layout; each host would then check the pair
for itself.
"""

from __future__ import annotations

from pathlib import Path

from cluster import OCTETS, Cluster
from ha_e2e import Pair
from hosts import Hosts

PAIR_OCTETS = {**OCTETS, "G": 17, "W": 18}
PLACEMENT = {"etcd1": "A", "pg1": "A", "etcd2": "G", "pg2": "G", "etcd3": "W", "haproxy": "B"}
# Not test_ha.py's ports, nor make run-ha's: the namespaces share /tmp, where each Postgres has its socket.
HA_PORT = 25460
PG_PORTS = {"pg1": 25461, "pg2": 25462}
REST_PORTS = {"pg1": 18018, "pg2": 18019}
ETCD_PORT = 25463
HOME_PREFIX = "hmh-ha-"  # under /tmp; a leftover one (a killed run) is removed before a new run starts
TOKEN_DELAY_MS = 30  # 600 tokens: 18 s of answer, longer than a failover
# The fault suite's 2 s abandonment grace (7 s in all, with watched_at's 5 s refresh), shorter than the failover: no
# replica can refresh watched_at while no primary answers, and the worker must not take that for abandonment (before
# OutageHold, its first lease renewal after a 13 s failover cancelled all 120 running streams, 2026-12-07).
ABANDON_SECONDS = 2


def pair_on(hosts: Hosts, keep: Path) -> Pair:
    return Pair(
        keep,
        ha_port=HA_PORT,
        pg_ports=PG_PORTS,
        rest_ports=REST_PORTS,
        etcd_port=ETCD_PORT,
        hosts=hosts,
        placement=PLACEMENT,
        home_prefix=HOME_PREFIX,
    )


class PairCluster(Cluster):
    """cluster.py's Handoff on the pair: psql runs on B, through HAProxy, or straight to one node."""

    def __init__(self, hosts: Hosts, log_dir: Path, bin_dir: Path, pair: Pair):
        super().__init__(hosts, log_dir, bin_dir, admin_url=pair.admin_url, sql_host="B")
        self.pair = pair

    def start_services(self, settings=None, worker_settings=None, worker=True) -> None:
        super().start_services(
            {
                "HANDOFF_LISTEN_DATABASE_URL": self.database_url,
                "HANDOFF_ABANDON_SECONDS": str(ABANDON_SECONDS),
                **(settings or {}),
            },
            {"HANDOFF_DEMO_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS), **(worker_settings or {})},
        )

    def node_sql(self, node: str, statement: str) -> str:
        """`statement` on one node of the pair, not through HAProxy (a standby answers reads)."""
        url = f"postgres://postgres@{self.pair.address(node)}:{PG_PORTS[node]}/{self.database}"
        return self.psql(url, statement)

    def log_tails(self) -> str:
        return super().log_tails() + "\n" + self.pair.log_tails()
