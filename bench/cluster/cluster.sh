#!/usr/bin/env bash
# cluster.sh: a cluster in a box (issue 23). N "nodes" are network namespaces kiln-node0 ..
# kiln-node{N-1}, each with a TAP device kl0 (10.77.0.{i+1}/24, MAC 02:6b:6c:00:00:i), joined by
# linkemu (linkemu.c next to this script), which forwards frames at a profile's rate and one-way
# latency. Open MPI starts ranks in the namespaces through rsh.sh. Needs root (or CAP_NET_ADMIN
# and CAP_SYS_ADMIN), `ip`, /dev/net/tun and a C compiler; where namespaces or TAP devices cannot
# be made, every command that would need them prints why and exits 77.
#
#   cluster.sh check                          can a cluster be made here? (exit 0, or 77 and why)
#   cluster.sh up N PROFILE [--scale F] [--mtu M] [--queue-us Q]
#                                             make N nodes (2..16); torn down if it fails
#   cluster.sh down                           stop linkemu, delete the namespaces (always safe)
#   cluster.sh exec I CMD...                  run CMD in node I's namespace
#   cluster.sh mpirun [--per-node K] ARGS...  mpirun ARGS with K ranks (default 1) per node,
#                                             from node 0, TCP only over the emulated links
#   cluster.sh run N PROFILE [--scale F] [--mtu M] -- CMD...
#                                             up, CMD (in the root namespace, with this script as
#                                             $KILN_CLUSTER), down: down happens however CMD ends
#   cluster.sh profiles                       list the profiles
#
# Profiles (rate, one-way latency, jitter): 25g5us (25 Gbit/s, 5 us, 1 us), 10g50us (10 Gbit/s,
# 50 us, 5 us), 1g200us (1 Gbit/s, 200 us, 20 us), custom:RATE_MBIT:DELAY_US:JITTER_US.
# --scale F divides the rate by F and keeps the latency (linkemu cannot forward 10 or 25 Gbit/s
# on a small machine: see bench/RESULTS.md, "Simulated cluster").
# --mtu: the TAPs' MTU (default 9000, jumbo frames, as data-centre networks for training use).
# --queue-us: a switch port's buffer, as the time to drain it at the rate (default 20000: deep
# enough that TCP's window, not tail drops and their retransmission timeouts, sets the pace).
#
# Environment: KILN_CLUSTER_KEEPALIVE (seconds of silence before Open MPI's daemons probe a
# link, default 2: a cut link ends the job a few seconds later; 0: never), KILN_CLUSTER_STATE
# (default /run/kiln-cluster), KILN_CLUSTER_PREFIX (the namespaces' names before the node
# number, default kiln-node; tests use their own), KILN_CLUSTER_RT (default 1: linkemu at
# real-time priority), CC (default cc). Environment variables reach the ranks: Open MPI's
# daemons start from this process.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=${KILN_CLUSTER_STATE:-/run/kiln-cluster}
prefix=${KILN_CLUSTER_PREFIX:-kiln-node}
subnet=10.77.0

die() { echo "cluster.sh: $*" >&2; exit 1; }
cannot() { echo "cluster.sh: skipped: $*" >&2; exit 77; }

profile_args() { # PROFILE SCALE -> "rate_mbit delay_us jitter_us"
    local rate delay jitter
    case $1 in
    25g5us) rate=25000 delay=5 jitter=1 ;;
    10g50us) rate=10000 delay=50 jitter=5 ;;
    1g200us) rate=1000 delay=200 jitter=20 ;;
    custom:*:*:*)
        IFS=: read -r _ rate delay jitter <<<"$1"
        awk -v r="$rate" -v d="$delay" -v j="$jitter" 'BEGIN { exit !(r > 0 && d >= 0 && j >= 0) }' ||
            die "custom:RATE_MBIT:DELAY_US:JITTER_US wants numbers, not '$1'"
        ;;
    *) die "unknown profile '$1' (cluster.sh profiles lists them)" ;;
    esac
    awk -v r="$rate" -v s="$2" 'BEGIN { if (!(s > 0)) exit 1 }' || die "--scale wants a number > 0"
    echo "$(awk -v r="$rate" -v s="$2" 'BEGIN { printf "%g", r / s }') $delay $jitter"
}

# Can namespaces and a TAP inside one be made? Prints the reason and exits 77 when not.
check() {
    [ "$(id -u)" = 0 ] || cannot "needs root for network namespaces (running as $(id -un))"
    command -v ip >/dev/null || cannot "no 'ip' command (iproute2)"
    [ -c /dev/net/tun ] || cannot "no /dev/net/tun: TAP devices cannot be made"
    local probe=kiln-probe-$$
    ip netns add "$probe" 2>/dev/null || cannot "'ip netns add' failed: network namespaces cannot be made here"
    if ! ip -n "$probe" tuntap add dev kl0 mode tap 2>/dev/null; then
        ip netns del "$probe" 2>/dev/null || true
        cannot "a TAP device cannot be made inside a namespace"
    fi
    ip netns del "$probe"
}

linkemu_bin() { # builds linkemu into the state folder when missing or older than its source
    local bin=$state/linkemu
    if [ ! -x "$bin" ] || [ "$here/linkemu.c" -nt "$bin" ]; then
        "${CC:-cc}" -O2 -std=gnu17 -Wall -Wextra -o "$bin.tmp" "$here/linkemu.c" ||
            die "cannot build linkemu"
        mv "$bin.tmp" "$bin"
    fi
    echo "$bin"
}

down() {
    if [ -r "$state/linkemu.pid" ]; then
        local pid
        pid=$(cat "$state/linkemu.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$state/linkemu.pid"
        [ -s "$state/linkemu.log" ] && grep -h '^linkemu: .*forwarded' "$state/linkemu.log" >&2 || true
    fi
    local ns pids
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${prefix}[0-9]*$" || true); do
        # What still runs in a node (a rank or daemon of a job that did not end) goes with it.
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -f "$state/nodes" "$state/hostfile"
}

up() {
    local n=$1 profile=$2 scale=1 mtu=9000 queue=20000
    shift 2
    while [ $# -gt 0 ]; do
        case $1 in
        --scale) scale=$2; shift ;;
        --queue-us) queue=$2; shift ;;
        --mtu) mtu=$2; shift ;;
        *) die "up: unknown option '$1'" ;;
        esac
        shift
    done
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 2 ] && [ "$n" -le 16 ] || die "up: N must be 2..16, not '$n'"
    [[ $mtu =~ ^[0-9]+$ ]] && [ "$mtu" -ge 576 ] && [ "$mtu" -le 65500 ] || die "up: bad --mtu"
    local args
    args=$(profile_args "$profile" "$scale")
    check
    mkdir -p "$state"
    [ -e "$state/nodes" ] && die "a cluster is already up ($(cat "$state/nodes") nodes): cluster.sh down first"
    trap 'down' EXIT # until it is up: a failure half way leaves nothing behind
    local bin i ns
    bin=$(linkemu_bin)
    echo "$n" >"$state/nodes"
    : >"$state/hostfile"
    for i in $(seq 0 $((n - 1))); do
        ns=$prefix$i
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip -n "$ns" tuntap add dev kl0 mode tap
        ip -n "$ns" link set kl0 address "$(printf '02:6b:6c:00:00:%02x' "$i")" mtu "$mtu"
        ip -n "$ns" addr add "$subnet.$((i + 1))/24" dev kl0
        ip -n "$ns" link set kl0 up
        echo "$subnet.$((i + 1)) slots=1" >>"$state/hostfile"
    done
    # Static neighbours: no ARP on the emulated links, so the first message pays no lookup.
    local j
    for i in $(seq 0 $((n - 1))); do
        for j in $(seq 0 $((n - 1))); do
            [ "$i" = "$j" ] && continue
            ip -n "$prefix$i" neigh replace "$subnet.$((j + 1))" \
                lladdr "$(printf '02:6b:6c:00:00:%02x' "$j")" dev kl0 nud permanent
        done
    done
    read -r rate delay jitter <<<"$args"
    local nss=()
    for i in $(seq 0 $((n - 1))); do nss+=("$prefix$i"); done
    # Real-time priority: the emulator is the network's hardware, and on a busy machine a timer
    # wake-up of an ordinary process comes milliseconds late; it sleeps between frames, so it
    # takes only the CPU its traffic costs (KILN_CLUSTER_RT=0: an ordinary process).
    local rt=()
    if [ "${KILN_CLUSTER_RT:-1}" = 1 ] && command -v chrt >/dev/null && chrt -f 50 true 2>/dev/null; then
        rt=(chrt -f 50)
    fi
    setsid "${rt[@]}" "$bin" --rate-mbit "$rate" --delay-us "$delay" --jitter-us "$jitter" --mtu "$mtu" \
        --queue-us "$queue" \
        "${nss[@]}" >"$state/linkemu.log" 2>&1 </dev/null &
    echo $! >"$state/linkemu.pid"
    for _ in $(seq 50); do
        grep -q ready "$state/linkemu.log" 2>/dev/null && break
        kill -0 "$(cat "$state/linkemu.pid")" 2>/dev/null || die "linkemu failed: $(cat "$state/linkemu.log")"
        sleep 0.1
    done
    grep -q ready "$state/linkemu.log" || die "linkemu did not start"
    if command -v ping >/dev/null; then
        for i in $(seq 1 $((n - 1))); do
            ip netns exec "${prefix}0" ping -c 1 -W 2 "$subnet.$((i + 1))" >/dev/null ||
                die "node 0 cannot reach node $i through linkemu"
        done
    fi
    echo "$profile scale $scale: $rate Mbit/s, ${delay} us one-way, jitter ${jitter} us, mtu $mtu, queue ${queue} us" >"$state/profile"
    trap - EXIT
    echo "cluster.sh: $n nodes up ($(cat "$state/profile"))"
}

node_ns() { # I -> namespace, checked
    local n
    n=$(cat "$state/nodes" 2>/dev/null) || die "no cluster is up"
    [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -lt "$n" ] || die "no node '$1' (nodes 0..$((n - 1)))"
    echo "$prefix$1"
}

run_mpirun() {
    local per=1
    if [ "${1:-}" = --per-node ]; then per=$2; shift 2; fi
    [[ $per =~ ^[0-9]+$ ]] && [ "$per" -ge 1 ] || die "--per-node wants a count >= 1"
    local n ns0
    n=$(cat "$state/nodes" 2>/dev/null) || die "no cluster is up"
    ns0=$(node_ns 0)
    sed "s/slots=[0-9]*/slots=$per/" "$state/hostfile" >"$state/hostfile.run"
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    # The launcher's daemons probe an idle link after KILN_CLUSTER_KEEPALIVE seconds (then 3
    # probes 1 s apart): a node behind a cut link is declared lost and the job ended.
    exec ip netns exec "$ns0" unshare --uts "$here/hostname.sh" "$ns0" mpirun --hostfile "$state/hostfile.run" \
        --mca plm_rsh_agent "$here/rsh.sh" --mca plm_rsh_no_tree_spawn 1 \
        --mca btl tcp,self --mca pml ob1 --mca btl_tcp_if_include "$subnet.0/24" \
        --mca oob_tcp_if_include "$subnet.0/24" --mca oob_tcp_keepalive_time "${KILN_CLUSTER_KEEPALIVE:-2}" \
        --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3 \
        --bind-to none --oversubscribe "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
check) check; echo "cluster.sh: network namespaces and TAP devices can be made" ;;
up) [ $# -ge 2 ] || die "usage: cluster.sh up N PROFILE [--scale F] [--mtu M]"; up "$@" ;;
down) down ;;
exec)
    [ $# -ge 2 ] || die "usage: cluster.sh exec I CMD..."
    ns=$(node_ns "$1"); shift
    exec ip netns exec "$ns" "$@"
    ;;
mpirun) run_mpirun "$@" ;;
run)
    [ $# -ge 2 ] || die "usage: cluster.sh run N PROFILE [options] -- CMD..."
    upargs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do upargs+=("$1"); shift; done
    [ "${1:-}" = -- ] && shift
    [ $# -gt 0 ] || die "run: no command after --"
    check
    trap 'down' EXIT
    trap 'exit 130' INT TERM
    up "${upargs[@]}"
    trap 'down' EXIT # up clears its own trap once the cluster is up
    KILN_CLUSTER="$here/cluster.sh" "$@"
    ;;
profiles) sed -n '/^# Profiles/,/^# on a small/p' "$0" | sed 's/^# //' ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] || exit 2 ;;
esac
