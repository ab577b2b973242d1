#!/usr/bin/env bash
# A highly available Postgres pair on this machine, for `make run-ha` (Procfile.ha) and Tests/e2e/test_ha.py (in `make test`): two
# Postgres nodes, pg1 and pg2, each run by Patroni (synchronous replication, pg_rewind); an etcd cluster of three
# members, etcd1, etcd2 and etcd3, holding Patroni's leader key (in production on hosts of their own, the third one
# the witness: no Postgres there); HAProxy in front, forwarding to whichever node is the primary. The configurations
# are deploy/ha/*, rendered with this machine's paths and ports into $HANDOFF_HA_HOME/conf.
#
#   scripts/ha.sh init              create the directories and render the configurations (every other command does)
#   scripts/ha.sh run MEMBER        run one member in the foreground under a supervisor that never exits because the
#                                   member died: it starts it again, a Postgres node (pg1, pg2) after
#                                   HANDOFF_HA_RESTART_SECONDS (15: longer than the leader key lives, so a killed
#                                   primary is replaced first and comes back as a replica), the others (etcd1,
#                                   etcd2, etcd3, haproxy) after 1 s. Procfile.ha's lines: honcho stops everything
#                                   when one of its processes exits, and these do not when a node fails or freezes.
#   scripts/ha.sh member MEMBER     run one member in the foreground, unsupervised (exec: its pid is the member's)
#   scripts/ha.sh start             start every member in the background and wait for a primary behind HAProxy
#   scripts/ha.sh stop              stop what `start` started (and a Postgres whose Patroni is gone)
#   scripts/ha.sh reset             stop and delete the data
#   scripts/ha.sh status            patronictl list, what each REST API answers to /primary and /replica, and where
#                                   HAProxy leads
#   scripts/ha.sh wait [SECONDS]    until one node is the primary with the other as its synchronous standby, and
#                                   HAProxy reaches the primary
#   scripts/ha.sh switchover [NODE] planned: the primary hands over to its synchronous standby, no commit lost
#   scripts/ha.sh failover NODE     promote NODE now, whatever the primary's state
#   scripts/ha.sh freeze NODE       fault: SIGSTOP the node's host, i.e. its Patroni and every one of its Postgres
#                                   processes (a hung host: no FIN, no RST); `thaw NODE` sends SIGCONT
#   scripts/ha.sh kill NODE         fault: SIGKILL the node's Patroni and Postgres (under `run`, the supervisor
#                                   starts it again)
#   scripts/ha.sh pids NODE         the pids of the node's Patroni, postmaster and other Postgres processes
#
# Ports (each overridable, Tests/e2e/test_ha.py (in `make test`) uses its own):
#   HANDOFF_HA_PORT      5440  HAProxy: the endpoint of every Handoff process (DATABASE_URL, HANDOFF_LISTEN_DATABASE_URL)
#   HANDOFF_HA_PG1_PORT  5441  Postgres pg1           HANDOFF_HA_PG2_PORT  5442  Postgres pg2
#   HANDOFF_HA_PG1_REST  8008  Patroni REST of pg1    HANDOFF_HA_PG2_REST  8009  Patroni REST of pg2
#   HANDOFF_HA_ETCD_PORT 2379  etcd: clients and peers of etcd1 on 2379/2380, etcd2 on 2381/2382, etcd3 on 2383/2384
# Addresses: every member listens on 127.0.0.1 unless told otherwise, which Tests/multihost does to put the members on
# hosts of their own (network namespaces):
#   HANDOFF_HA_HOST (HAProxy), HANDOFF_HA_PG1_HOST, HANDOFF_HA_PG2_HOST, HANDOFF_HA_ETCD1_HOST .. HANDOFF_HA_ETCD3_HOST
#   HANDOFF_HA_TRUSTED   the network whose connections Postgres trusts (pg_hba), 127.0.0.1/32
#   HANDOFF_HA_NETNS_<MEMBER>  (HANDOFF_HA_NETNS_PG1, ..._ETCD3, ..._HAPROXY) `start` runs that member in this network
#                        namespace (`ip netns exec`); `status`, `wait` and `switchover` ask from HAProxy's
# Data: HANDOFF_HA_HOME (default .data/ha) holds pg1/ and pg2/ (the data directories), etcd/, conf/ and run/.
# Authentication is `trust` for every role on loopback and on the local socket: a development stack, with no
# password anywhere (docs/deploy.md, "Highly available Postgres", says what production needs instead).
# Postgres refuses to run as root: as root, Patroni runs as the `postgres` user, and when that user cannot reach
# .data/ha (a clone under a 0700 home), the data lives under /tmp and .data/ha links to it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PATH=$PATH:/usr/sbin:/usr/bin  # haproxy
self="$root/scripts/ha.sh"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
restart_seconds=${HANDOFF_HA_RESTART_SECONDS:-15}
etcd_port=${HANDOFF_HA_ETCD_PORT:-2379}

# The placeholders of deploy/ha/*: ports, addresses, the trusted network.
declare -A ports=(
    [HAPROXY_HOST]=${HANDOFF_HA_HOST:-127.0.0.1}
    [PG1_HOST]=${HANDOFF_HA_PG1_HOST:-127.0.0.1}
    [PG2_HOST]=${HANDOFF_HA_PG2_HOST:-127.0.0.1}
    [ETCD1_HOST]=${HANDOFF_HA_ETCD1_HOST:-127.0.0.1}
    [ETCD2_HOST]=${HANDOFF_HA_ETCD2_HOST:-127.0.0.1}
    [ETCD3_HOST]=${HANDOFF_HA_ETCD3_HOST:-127.0.0.1}
    [HA_TRUSTED]=${HANDOFF_HA_TRUSTED:-127.0.0.1/32}
    [HAPROXY_PORT]=${HANDOFF_HA_PORT:-5440}
    [PG1_PORT]=${HANDOFF_HA_PG1_PORT:-5441}
    [PG2_PORT]=${HANDOFF_HA_PG2_PORT:-5442}
    [PG1_REST_PORT]=${HANDOFF_HA_PG1_REST:-8008}
    [PG2_REST_PORT]=${HANDOFF_HA_PG2_REST:-8009}
    [ETCD1_PORT]=$etcd_port
    [ETCD1_PEER_PORT]=$((etcd_port + 1))
    [ETCD2_PORT]=$((etcd_port + 2))
    [ETCD2_PEER_PORT]=$((etcd_port + 3))
    [ETCD3_PORT]=$((etcd_port + 4))
    [ETCD3_PEER_PORT]=$((etcd_port + 5))
)
members=(etcd1 etcd2 etcd3 pg1 pg2 haproxy)

if [ "$(id -u)" = 0 ]; then
    as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
else
    as_pg=()
fi

# The network namespace a member runs in (HANDOFF_HA_NETNS_<MEMBER>), as a command prefix: none by default.
netns() {  # member array-name
    local variable="HANDOFF_HA_NETNS_${1^^}"
    local -n prefix=$2
    prefix=()
    [ -z "${!variable:-}" ] || prefix=(ip netns exec "${!variable}")
}
# The checks (curl, psql, patronictl) run where HAProxy runs: that host reaches every member.
netns haproxy probe

die() { echo "ha.sh: $*" >&2; exit 1; }

# The home: HANDOFF_HA_HOME, else .data/ha (or, as root when the postgres user cannot reach it, a directory under
# /tmp that .data/ha links to). Always its real path: Patroni runs as another user and must not follow our links.
resolve_home() {
    if [ -n "${HANDOFF_HA_HOME:-}" ]; then
        home=$HANDOFF_HA_HOME
    else
        home="$root/.data/ha"
        if [ ! -e "$home" ] && [ "$(id -u)" = 0 ]; then
            mkdir -p "$home"
            chown postgres:postgres "$home"
            if ! "${as_pg[@]}" test -w "$home" 2>/dev/null; then
                rmdir "$home"
                local elsewhere
                elsewhere="/tmp/handoff-ha-$(printf %s "$root" | md5sum | cut -c1-8)"
                mkdir -p "$elsewhere"
                ln -sfn "$elsewhere" "$home"
            fi
        fi
    fi
    mkdir -p "$home"
    home=$(readlink -f "$home")
}

render() {  # template output [extra sed expressions...]
    local template=$1 output=$2 name
    shift 2
    local expressions=(-e "s|@HA_HOME@|$home|g" -e "s|@PG_BIN@|$bin|g" "$@")
    for name in "${!ports[@]}"; do
        expressions+=(-e "s|@$name@|${ports[$name]}|g")
    done
    # Into a new file, then renamed: members starting together each render, and none reads a half-written file.
    sed "${expressions[@]}" "$template" >"$output.$$"
    ! grep -n '@[A-Z0-9_]*@' "$output.$$" || die "$output: a placeholder was left unrendered"
    [ "$(id -u)" != 0 ] || chown postgres:postgres "$output.$$"
    mv -f "$output.$$" "$output"
}

init() {
    [ -x "$bin/postgres" ] || die "postgres server binaries not found: run scripts/install-deps.sh ha"
    local tool
    for tool in patroni patronictl etcd haproxy; do
        command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh ha"
    done
    resolve_home
    mkdir -p "$home/conf" "$home/run" "$home/etcd"
    render "$root/deploy/ha/patroni-pg1.yml" "$home/conf/patroni-pg1.yml"
    render "$root/deploy/ha/patroni-pg2.yml" "$home/conf/patroni-pg2.yml"
    render "$root/deploy/ha/haproxy.cfg" "$home/conf/haproxy.cfg"
    local member
    for member in etcd1 etcd2 etcd3; do
        render "$root/deploy/ha/etcd.yml" "$home/conf/$member.yml" -e "s|@ETCD_NAME@|$member|g" \
            -e "s|@ETCD_HOST@|${ports[${member^^}_HOST]}|g" \
            -e "s|@ETCD_CLIENT_PORT@|${ports[${member^^}_PORT]}|g" -e "s|@ETCD_PEER_PORT@|${ports[${member^^}_PEER_PORT]}|g"
    done
    # Run by Patroni (as the postgres user) once, on the node that bootstraps the cluster, with a connection URL.
    printf '#!/bin/sh\nexec "%s/psql" "$1" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE handoff"\n' "$bin" \
        >"$home/conf/post-bootstrap.sh.$$"
    chmod 755 "$home/conf/post-bootstrap.sh.$$"
    [ "$(id -u)" != 0 ] || chown postgres:postgres "$home/conf/post-bootstrap.sh.$$"
    mv -f "$home/conf/post-bootstrap.sh.$$" "$home/conf/post-bootstrap.sh"
    # The data directories Patroni creates itself (initdb, pg_basebackup), as the postgres user.
    [ "$(id -u)" != 0 ] || chown postgres:postgres "$home" "$home/conf"
}

patroni_config() { echo "$home/conf/patroni-$1.yml"; }

member() {
    init
    echo $$ >"$home/run/$1.pid"
    case "$1" in
        pg1 | pg2)
            # A working directory the postgres user may enter, and HOME for whatever Patroni writes there.
            cd "$home"
            # Patroni logs `no action. I am (pg1), ...` every loop_wait: its state changes are what matter. The
            # filter is a process substitution, so the pid in run/ stays Patroni's.
            exec > >(grep --line-buffered -v ' INFO: no action\. ') 2>&1
            HOME="$home" exec "${as_pg[@]}" patroni "$(patroni_config "$1")" ;;
        etcd1 | etcd2 | etcd3)
            exec etcd --config-file "$home/conf/$1.yml" ;;
        haproxy)
            haproxy -q -c -f "$home/conf/haproxy.cfg" >/dev/null
            exec haproxy -db -f "$home/conf/haproxy.cfg" ;;
        *) die "unknown member $1 (${members[*]})" ;;
    esac
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

member_pid() {  # member: its pid, if it runs
    local pid
    pid=$(cat "$home/run/$1.pid" 2>/dev/null || true)
    if alive "$pid"; then echo "$pid"; fi
}

postmaster_pid() {  # node: the pid of its postmaster, if one runs
    local pid
    pid=$(head -n 1 "$home/$1/postmaster.pid" 2>/dev/null || true)
    if alive "$pid"; then echo "$pid"; fi
}

pids() {  # node: Patroni's pid, the postmaster's, every other Postgres process of the node
    local postmaster
    member_pid "$1"
    postmaster=$(postmaster_pid "$1")
    if [ -n "$postmaster" ]; then
        echo "$postmaster"
        pgrep -P "$postmaster" || true
    fi
}

signal_node() {  # signal node
    local list
    # When freezing, the postmaster first, so it forks no new backend between the listing and the signal.
    if [ "$1" = STOP ]; then
        list=$(postmaster_pid "$2")
        [ -z "$list" ] || kill -STOP "$list"
    fi
    list=$(pids "$2")
    [ -n "$list" ] || die "nothing of $2 is running"
    # shellcheck disable=SC2086
    kill -"$1" $list 2>/dev/null || true
}

supervise() {
    local name=$1 child= stopping= delay=1 rc
    [ "$name" != pg1 ] && [ "$name" != pg2 ] || delay=$restart_seconds
    # honcho sends SIGTERM to the whole process group; a frozen node must first be woken to hear it.
    trap 'stopping=1; [ "$name" != pg1 ] && [ "$name" != pg2 ] || signal_node CONT "$name" 2>/dev/null || true; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true' TERM INT
    while :; do
        "$self" member "$name" &
        child=$!
        while alive "$child"; do
            wait "$child" || true
        done
        wait "$child" 2>/dev/null && rc=0 || rc=$?
        [ -z "$stopping" ] || exit 0
        echo "ha.sh: $name exited ($rc); starting it again in ${delay}s" >&2
        sleep "$delay" &
        child=$!
        wait "$child" || true
        [ -z "$stopping" ] || exit 0
    done
}

rest() {  # node path: the HTTP status of the node's Patroni REST API, or 000
    local url="http://${ports[${1^^}_HOST]}:${ports[${1^^}_REST_PORT]}$2"
    "${probe[@]}" curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true
}

haproxy_url() {  # database
    echo "postgres://postgres@${ports[HAPROXY_HOST]}:${ports[HAPROXY_PORT]}/$1"
}

patronictl() {
    resolve_home
    "${probe[@]}" "${as_pg[@]}" env HOME="$home" patronictl -c "$(patroni_config pg1)" "$@"
}

status() {
    resolve_home
    local node
    patronictl list 2>/dev/null || echo "patronictl: etcd does not answer"
    for node in pg1 pg2; do
        echo "$node REST ${ports[${node^^}_HOST]}:${ports[${node^^}_REST_PORT]}: /primary $(rest "$node" /primary)," \
            "/replica $(rest "$node" /replica)"
    done
    echo "HAProxy ${ports[HAPROXY_HOST]}:${ports[HAPROXY_PORT]}: $("${probe[@]}" psql "$(haproxy_url postgres)" \
        -X -tA -c "SELECT CASE WHEN pg_is_in_recovery() THEN 'a replica?!' ELSE 'the primary, port ' || current_setting('port') END" \
        2>/dev/null || echo unreachable)"
}

wait_ready() {
    resolve_home
    local deadline=$((SECONDS + ${1:-120})) a b
    while [ $SECONDS -lt $deadline ]; do
        a=$(rest pg1 /primary)$(rest pg2 /sync)
        b=$(rest pg2 /primary)$(rest pg1 /sync)
        if { [ "$a" = 200200 ] || [ "$b" = 200200 ]; } &&
            "${probe[@]}" psql "$(haproxy_url handoff)" -X -tA -c 'SELECT 1' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    status >&2 || true
    die "no primary with a synchronous standby behind HAProxy after ${1:-120} s"
}

start() {
    init
    local name place
    for name in "${members[@]}"; do
        [ -z "$(member_pid "$name")" ] || continue
        netns "$name" place
        # A session of its own: whatever signals the caller's process group (timeout, a terminal) leaves it running.
        setsid nohup "${place[@]}" "$self" member "$name" >>"$home/run/$name.log" 2>&1 </dev/null &
    done
    wait_ready 120
}

stop() {
    resolve_home
    local name pid deadline
    for name in haproxy pg1 pg2 etcd1 etcd2 etcd3; do
        pid=$(member_pid "$name")
        [ -n "$pid" ] || continue
        kill -CONT "$pid" 2>/dev/null || true
        if [ "$name" = pg1 ] || [ "$name" = pg2 ]; then
            signal_node CONT "$name" 2>/dev/null || true
        fi
        kill -TERM "$pid"
        deadline=$((SECONDS + 30))
        while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        if alive "$pid"; then kill -KILL "$pid"; fi
    done
    # A Postgres left behind by a Patroni that was killed.
    for name in pg1 pg2; do
        if [ -n "$(postmaster_pid "$name")" ]; then
            "${as_pg[@]}" "$bin/pg_ctl" -D "$home/$name" -m fast -w stop >/dev/null 2>&1 || true
        fi
    done
}

node_arg() {
    case "${1:-}" in pg1 | pg2) ;; *) die "name a node: pg1 or pg2" ;; esac
}

case "${1:-}" in
    init) init ;;
    run) [ -n "${2:-}" ] || die "usage: $0 run MEMBER (${members[*]})"; resolve_home; supervise "$2" ;;
    member) [ -n "${2:-}" ] || die "usage: $0 member MEMBER (${members[*]})"; member "$2" ;;
    start) start ;;
    stop) stop ;;
    reset) stop; resolve_home; rm -rf "${home:?}"/pg1 "$home"/pg2 "$home"/etcd "$home"/conf "$home"/run ;;
    status) status ;;
    wait) wait_ready "${2:-120}" ;;
    switchover)
        if [ -n "${2:-}" ]; then patronictl switchover --candidate "$2" --force; else patronictl switchover --force; fi ;;
    failover) node_arg "${2:-}"; patronictl failover --candidate "$2" --force ;;
    freeze) node_arg "${2:-}"; resolve_home; signal_node STOP "$2" ;;
    thaw) node_arg "${2:-}"; resolve_home; signal_node CONT "$2" ;;
    kill) node_arg "${2:-}"; resolve_home; signal_node KILL "$2" ;;
    pids) node_arg "${2:-}"; resolve_home; pids "$2" ;;
    *) die "usage: $0 init|run|member|start|stop|reset|status|wait|switchover|failover|freeze|thaw|kill|pids" ;;
esac
