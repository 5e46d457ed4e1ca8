#!/usr/bin/env bash
# probe.sh: measures linkemu against what it was told to emulate: ping round-trip time (node 0 to
# node 1, median of --pings) against twice the one-way latency, and TCP throughput (iperf3, node 0
# to node 1, and with --ring every node i to node i+1 at once, as a ring all-reduce loads the
# links) against the rate; prints the emulator's own CPU use.
#
#   bench/cluster/probe.sh [--nodes N] [--pings K] [--secs S] [--ring] PROFILE [cluster.sh up options]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
n=2 pings=50 secs=4 ring=0
while [ $# -gt 0 ]; do
    case $1 in
    --nodes) n=$2; shift ;;
    --pings) pings=$2; shift ;;
    --secs) secs=$2; shift ;;
    --ring) ring=1 ;;
    *) break ;;
    esac
    shift
done
[ $# -ge 1 ] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
command -v iperf3 >/dev/null || { echo "probe.sh: needs iperf3 (apt-get install iperf3)" >&2; exit 2; }
command -v ping >/dev/null || { echo "probe.sh: needs ping (apt-get install iputils-ping)" >&2; exit 2; }
C=$here/cluster.sh
trap '"$C" down' EXIT
"$C" up "$n" "$@"
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$C" exec 0 ping -c "$pings" -i 0.01 10.77.0.2 | sed -n 's/.*time=\([0-9.]*\).*/\1/p' | sort -g |
    awk '{ v[NR] = $1 } END { printf "ping rtt ms: median %.3f, min %.3f, max %.3f (%d pings)\n", v[int((NR + 1) / 2)], v[1], v[NR], NR }'
tmp=$(mktemp -d /tmp/kiln-probe.XXXXXX)
last=0
[ "$ring" = 1 ] && last=$((n - 1))
for i in $(seq 0 "$last"); do
    "$C" exec $(((i + 1) % n)) iperf3 -s -1 -p $((5201 + i)) >/dev/null 2>&1 &
done
sleep 0.5
for i in $(seq 0 "$last"); do
    "$C" exec "$i" iperf3 -c "10.77.0.$(((i + 1) % n + 1))" -p $((5201 + i)) -t "$secs" -J >"$tmp/c$i.json" &
done
wait
for i in $(seq 0 "$last"); do
    /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); e=d["end"]
print("iperf3 node %s -> next: %.0f Mbit/s received, %d retransmits" % (sys.argv[2], e["sum_received"]["bits_per_second"] / 1e6, e["sum_sent"].get("retransmits", 0)))' "$tmp/c$i.json" "$i"
done
rm -rf "$tmp"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
