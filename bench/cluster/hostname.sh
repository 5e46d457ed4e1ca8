#!/bin/sh
# hostname.sh NAME CMD...: sets the host name (in a UTS namespace of its own, see cluster.sh) and
# runs CMD, so that each simulated node has a host name of its own, as real nodes do.
set -eu
hostname "$1"
shift
exec "$@"
