# A single-node Slurm cluster for the slurm tests, sourced by them (bash). It installs slurm-wlm
# and munge when they are missing (apt-get, as root), then runs munged, slurmctld and slurmd as
# root on loopback with every file (key, sockets, state, spool, logs, slurm.conf) in one folder:
#
#   . tests/slurm/cluster.sh
#   cluster_start DIR || exit $?     # 77 when Slurm cannot be installed or started here
#   trap 'cluster_stop' EXIT
#   sbatch ...                       # SLURM_CONF is exported
#
# cluster_stop cancels the jobs, stops the daemons and ends every process still using DIR; a
# watcher started apart from the test does the same, and removes DIR, if the test itself is
# killed, so no daemon outlives the test. Nothing outside DIR is written (the system's munge key and /etc/slurm are
# left alone), except the packages installed.

cluster_log() { echo "slurm cluster: $*"; }

# Installs slurm-wlm and munge if a program is missing. Returns 77 when that cannot be done.
cluster_install() {
    local need=0 p
    for p in munged mungekey slurmctld slurmd sbatch srun scontrol sinfo squeue scancel; do
        command -v "$p" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$p" \
            >/dev/null 2>&1 || need=1
    done
    export PATH="$PATH:/usr/sbin:/sbin"
    [ "$need" = 1 ] || return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        cluster_log "slurm-wlm or munge missing and apt-get is not ours to run (not root)"
        return 77
    fi
    cluster_log "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >"$1/apt.log" 2>&1; then
        apt-get update -q >>"$1/apt.log" 2>&1
        apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$1/apt.log" 2>&1 || {
            tail -n 20 "$1/apt.log"
            cluster_log "apt-get could not install slurm-wlm and munge"
            # CI installs them: there their absence fails the test instead of skipping it.
            [ "${CI:-}" = true ] && return 1
            return 77
        }
    fi
}

# Two free TCP ports on loopback, for slurmctld and slurmd.
cluster_ports() {
    /usr/bin/python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])'
}

cluster_write_conf() { # dir, mpi default
    local d="$1" host ports
    host="$(hostname -s)"
    read -r -a ports < <(cluster_ports)
    cat >"$d/slurm.conf" <<EOF
# A one-node cluster for kiln's tests (tests/slurm/cluster.sh); everything lives in $d.
ClusterName=kilntest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${ports[0]}
SlurmdPort=${ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again once its credential expires (default 120 s): 10 s here.
AuthInfo=socket=$d/run/munge.sock,cred_expire=10
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=$2
JobRequeue=1
ReturnToService=2
SlurmdParameters=config_overrides
# sbatch --wait polls every 2 s, then 8 s, then 32 s, while that is under MinJobAge/2: 16 keeps it
# at 8 s, and a finished job's record for the checks that follow.
MinJobAge=16
SchedulerParameters=sched_interval=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# True while process $1 runs. A zombie has ended: in a container nobody may reap it.
cluster_alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# The pids of processes whose working folder, or an open file, is under $1: jobs, steps and
# daemons of this cluster, and nothing else.
cluster_pids_in() {
    find /proc/[0-9]*/cwd /proc/[0-9]*/fd -maxdepth 1 \( -lname "$1" -o -lname "$1/*" \) \
        2>/dev/null | cut -d/ -f3 | sort -u | grep -vx -e "$$" -e "$BASHPID"
}

# Ends every process of the cluster in dir $1: TERM, then KILL after 10 s. Used by cluster_stop
# and by the watcher; safe to run twice.
cluster_sweep() {
    local d="$1" pids i
    for f in slurmctld slurmd munged; do
        [ -s "$d/run/$f.pid" ] && kill -TERM "$(cat "$d/run/$f.pid")" 2>/dev/null
    done
    for i in $(seq 1 20); do
        pids="$(cluster_pids_in "$d")"
        [ -n "$pids" ] || return 0
        [ "$i" = 1 ] && kill -TERM $pids 2>/dev/null
        sleep 0.5
    done
    kill -KILL $pids 2>/dev/null
    sleep 0.5
}

cluster_start() { # dir
    CLUSTER_DIR="$1"
    local d="$1" rc
    cluster_install "$d" || return $?
    mkdir -p "$d/munge" "$d/run" "$d/state" "$d/spool" "$d/log" || return 77
    # munged checks that the socket's folders are searchable by all and the key private.
    chmod 755 "$d" "$d/run" && chmod 700 "$d/munge"
    mungekey -c -k "$d/munge/munge.key" 2>"$d/log/mungekey.err" ||
        { dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 2>/dev/null &&
            chmod 600 "$d/munge/munge.key"; }
    # The watcher: if this test dies without cluster_stop (a kill -9, a ctest timeout), it
    # sweeps the cluster away. It runs apart (setsid, not a child) so that it outlives the test.
    setsid -f bash -c '
        cd / && . "$1" && while cluster_alive "$2"; do sleep 1; done &&
        cluster_sweep "$3" && rm -rf "$3"' \
        cluster-watch "${BASH_SOURCE[0]}" $$ "$d" </dev/null >/dev/null 2>&1
    munged -F --socket="$d/run/munge.sock" --key-file="$d/munge/munge.key" \
        --pid-file="$d/run/munged.pid" --log-file="$d/log/munged.log" \
        --seed-file="$d/munge/munged.seed" </dev/null >"$d/log/munged.out" 2>&1 &
    for _ in $(seq 1 50); do
        [ -S "$d/run/munge.sock" ] && break
        sleep 0.1
    done
    if [ ! -S "$d/run/munge.sock" ]; then
        cat "$d/log/munged.out"
        cluster_log "munged did not start"
        return 77
    fi
    # pmix when this Slurm has the plugin (kiln's srun launch needs it), else none.
    local mpi=none
    compgen -G '/usr/lib/*/slurm-wlm/mpi_pmix*.so' >/dev/null && mpi=pmix
    cluster_write_conf "$d" "$mpi"
    export SLURM_CONF="$d/slurm.conf"
    slurmctld -D -c -f "$SLURM_CONF" </dev/null >"$d/log/slurmctld.out" 2>&1 &
    slurmd -D -N "$(hostname -s)" -f "$SLURM_CONF" </dev/null >"$d/log/slurmd.out" 2>&1 &
    for _ in $(seq 1 60); do
        [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && break
        sleep 0.5
    done
    if [ "$(sinfo -h -o %t 2>/dev/null)" != idle ]; then
        tail -n 20 "$d"/log/slurmctld.log "$d"/log/slurmd.log "$d"/log/*.out 2>/dev/null
        cluster_log "the node did not become idle: $(sinfo -h -o '%t %E' 2>&1)"
        return 77
    fi
    cluster_log "up: node $(hostname -s), $(nproc) CPUs, MpiDefault=$mpi, in $d"
}

cluster_stop() {
    local d="${CLUSTER_DIR:-}"
    [ -n "$d" ] && [ -d "$d" ] || return 0
    cd / || return 1 # out of the cluster's folder, whose processes are ended
    if [ -n "${SLURM_CONF:-}" ] && [ -e "$SLURM_CONF" ]; then
        timeout 10 scancel --quiet --full $(squeue -h -o %i 2>/dev/null) >/dev/null 2>&1
        for _ in $(seq 1 20); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    cluster_sweep "$d"
    CLUSTER_DIR=
}
