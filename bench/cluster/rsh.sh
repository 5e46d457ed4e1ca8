#!/bin/sh
# rsh.sh: Open MPI's remote shell for bench/cluster (--mca plm_rsh_agent): `rsh.sh HOST CMD...`
# runs CMD in the namespace of the node whose address is HOST (10.77.0.{i+1} -> kiln-node{i},
# or $KILN_CLUSTER_PREFIX{i}),
# through a shell as ssh would. Open MPI calls it to start its daemon (orted) on each node.
set -eu
host=$1
shift
case $host in
10.77.0.[0-9]*) i=$((${host##*.} - 1)) ;;
*) echo "rsh.sh: '$host' is not a bench/cluster node (10.77.0.N)" >&2; exit 255 ;;
esac
# Its own UTS namespace and host name too: Open MPI tells nodes apart by host name as well.
node=${KILN_CLUSTER_PREFIX:-kiln-node}$i
exec ip netns exec "$node" unshare --uts /bin/sh -c "hostname $node && $*"
