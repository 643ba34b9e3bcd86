#!/usr/bin/env bash
# A small Slurm cluster on this machine, from Debian's packages, for trying and testing jobs/.
#
#   scripts/slurm-local.sh install   # apt-get slurmctld, slurmd, slurm-client, munge (root)
#   scripts/slurm-local.sh start     # install if needed, then munged + slurmctld + one slurmd per
#                                    # node; waits until every node is idle. Idempotent: a healthy
#                                    # cluster is left running.
#   scripts/slurm-local.sh status    # daemons, sinfo, and the SLURM_CONF line to export
#   scripts/slurm-local.sh stop      # cancels jobs, stops the daemons (logs are kept)
#
# Everything lives under $MPIRL_SLURM_DIR (default ${TMPDIR:-/tmp}/mpirl-slurm): slurm.conf, the
# munge key and socket, state, spool, per-node scratch and logs. Clients find the cluster through
#   export SLURM_CONF=$MPIRL_SLURM_DIR/slurm.conf        (`status` prints the line)
# and, when this machine has no /etc/slurm/slurm.conf of its own, through a link that `start`
# puts there (a real site's config is never touched).
#
# The cluster: $MPIRL_SLURM_NODES nodes (default 2: node1, node2, one slurmd each, all on
# localhost) of $MPIRL_SLURM_CPUS CPUs each (default 8), whatever the machine really has
# (SlurmdParameters=config_overrides): 8-task jobs and 2-node jobs fit on a 2-core box, whose
# cores the ranks then share. Every wait is bounded: a daemon that does not come up fails `start`
# with the tail of its log.
set -euo pipefail

STATE=${MPIRL_SLURM_DIR:-${TMPDIR:-/tmp}/mpirl-slurm}
NODES=${MPIRL_SLURM_NODES:-2}
CPUS=${MPIRL_SLURM_CPUS:-8}
CTLD_PORT=${MPIRL_SLURMCTLD_PORT:-6817}
FIRST_SLURMD_PORT=${MPIRL_SLURMD_PORT:-6818}   # node i listens on FIRST_SLURMD_PORT + i - 1
START_TIMEOUT=${MPIRL_SLURM_START_TIMEOUT:-60}  # seconds for each daemon / the nodes to come up
CONF=$STATE/slurm.conf
MUNGE_SOCKET=$STATE/munge/munge.socket
SYSTEM_CONF=/etc/slurm/slurm.conf
export SLURM_CONF=$CONF
export PATH=$PATH:/usr/sbin:/sbin
NODE_NAMES=()
for ((i = 1; i <= NODES; i++)); do NODE_NAMES+=("node$i"); done

say() { printf '[slurm-local] %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

# -- install -------------------------------------------------------------------------------------
PACKAGES=(slurmctld slurmd slurm-client munge libpmix2)
missing_tools() {
    local t
    for t in slurmctld slurmd sinfo sbatch srun scontrol munged mungekey; do
        command -v "$t" >/dev/null 2>&1 || echo "$t"
    done
}

install() {
    [ -n "$(missing_tools)" ] || return 0
    [ "$(id -u)" = 0 ] || die "Slurm is not installed, and only root can install it (apt-get install ${PACKAGES[*]})"
    command -v apt-get >/dev/null || die "Slurm is not installed and this is not a Debian/Ubuntu machine"
    say "installing ${PACKAGES[*]} (missing: $(missing_tools | tr '\n' ' '))"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has no package lists: fetch them first; a stale list is refreshed on failure.
    if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
        timeout 300 apt-get update -qq
    fi
    if ! timeout 600 apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null; then
        timeout 300 apt-get update -qq
        timeout 600 apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    fi
    [ -z "$(missing_tools)" ] || die "still missing after install: $(missing_tools | tr '\n' ' ')"
}

# -- configuration ---------------------------------------------------------------------------------
write_config() {
    local last_node=$NODES last_port=$((FIRST_SLURMD_PORT + NODES - 1)) node
    mkdir -p "$STATE"/{munge,ctld,spool,log,run,scratch}
    for node in "${NODE_NAMES[@]}"; do mkdir -p "$STATE/spool/$node" "$STATE/scratch/$node"; done
    chmod 700 "$STATE/munge"
    [ -s "$STATE/munge/munge.key" ] || mungekey -c -k "$STATE/munge/munge.key"
    chmod 600 "$STATE/munge/munge.key"

    cat > "$CONF.new" <<EOF
# Written by scripts/slurm-local.sh: $NODES nodes on localhost for mpirl's jobs and tests.
ClusterName=mpirl-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job may start again only once its old credential has expired: cred_expire=10
# (default 120) keeps that wait to seconds.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE/ctld
FirstJobId=$(( $(date +%s) % 60000000 + 1 ))
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
# %n: each node's slurmd has its own spool, pid file, log and scratch (PMIx keeps its per-job
# directories under TmpFS, which would collide between nodes on one host).
SlurmdSpoolDir=$STATE/spool/%n
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmdLogFile=$STATE/log/slurmd-%n.log
TmpFS=$STATE/scratch/%n
# Works in containers and on small boxes: no cgroups, no CPU binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
MailProg=/bin/true
# Quick turnaround: schedule every second; finished jobs stay visible to scontrol for 10 min.
SchedulerParameters=sched_interval=1
ReturnToService=2
MessageTimeout=30
KillWait=10
InactiveLimit=0
MinJobAge=600
SlurmdTimeout=300
SlurmctldTimeout=120
NodeName=node[1-$last_node] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[$FIRST_SLURMD_PORT-$last_port] CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=node[1-$last_node] Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.new" "$CONF"
    # Let plain `sinfo` find this cluster, unless the machine already has a Slurm of its own.
    if [ ! -e "$SYSTEM_CONF" ] || [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then
        { mkdir -p "$(dirname "$SYSTEM_CONF")" && ln -sfn "$CONF" "$SYSTEM_CONF"; } 2>/dev/null || true
    fi
}

# -- daemons ----------------------------------------------------------------------------------------
pid_of() {  # pid_of PIDFILE_NAME [COMMAND]: the pid in run/NAME.pid, if alive and that command
    local file=$STATE/run/$1.pid comm=${2:-$1} pid
    [ -s "$file" ] || return 1
    pid=$(cat "$file")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1  # not a reused pid
    echo "$pid"
}

DAEMONS=(munged slurmctld)
for node in "${NODE_NAMES[@]}"; do DAEMONS+=("slurmd-$node"); done
daemon_pid() { pid_of "$1" "${1%%-*}"; }  # slurmd-node1 -> pid file slurmd-node1, command slurmd

wait_for() {  # wait_for WHAT LOG CMD...: retry CMD twice a second for START_TIMEOUT seconds
    local what=$1 log=$2 deadline=$((SECONDS + START_TIMEOUT))
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            say "$what did not come up within ${START_TIMEOUT}s; last lines of $log:" >&2
            tail -n 20 "$log" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.5
    done
}

munge_ok() { munge -S "$MUNGE_SOCKET" -n </dev/null | unmunge -S "$MUNGE_SOCKET"; }
ctld_ok() { timeout 10 scontrol ping | grep -q 'is UP'; }
nodes_up() {  # every node takes jobs: idle, or already running some (mix, alloc)
    local states
    states=$(timeout 10 sinfo -h -N -o %t 2>/dev/null) || return 1
    [ "$(echo "$states" | grep -c -x -E 'idle|mix|alloc')" = "$NODES" ]
}

all_running() {
    local d
    for d in "${DAEMONS[@]}"; do daemon_pid "$d" >/dev/null || return 1; done
}

start() {
    install
    if [ -s "$CONF" ] && all_running && ctld_ok && nodes_up; then
        say "already running ($CONF)"
        return 0
    fi
    stop_daemons quiet
    write_config

    say "starting munged"
    timeout 30 munged --force --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
        --seed-file="$STATE/munge/munged.seed"
    wait_for munged "$STATE/log/munged.log" munge_ok

    say "starting slurmctld"
    # -c: forget the jobs of an earlier, crashed run of this cluster (they died with it). Job ids
    # then start from FirstJobId, taken from the clock so that they do not repeat old ones (logs
    # and run directories are named after them).
    timeout 30 slurmctld -c -f "$CONF"
    wait_for slurmctld "$STATE/log/slurmctld.log" ctld_ok

    for node in "${NODE_NAMES[@]}"; do
        say "starting slurmd for $node"
        # The nodes share one host. Each slurmd gets a UTS namespace whose hostname is the node's
        # name, so that its jobs see that name as their host: MPI libraries then treat the nodes
        # as separate machines (Open MPI names its shared-memory segments by host and local
        # rank, and ranks on two nodes of one hostname would collide and crash).
        if unshare --uts true 2>/dev/null; then
            timeout 30 unshare --uts sh -c "hostname '$node' && exec slurmd -f '$CONF' -N '$node'"
        else
            say "cannot give $node a hostname of its own (unshare --uts): multi-node MPI jobs may fail"
            timeout 30 slurmd -f "$CONF" -N "$node"
        fi
    done
    wait_for "slurmd (all $NODES nodes idle)" "$STATE/log/slurmd-node1.log" nodes_up || {
        timeout 10 sinfo -N >&2 || true; return 1; }
    say "ready: $(sinfo -h -o '%D node(s) x %c CPUs, partition %P, %t' | head -1)"
    say "clients: export SLURM_CONF=$CONF"
}

stop_one() {  # stop_one DAEMON: TERM, then KILL after 10 s
    local pid i
    pid=$(daemon_pid "$1") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$STATE/run/$1.pid"; return 0; }
        sleep 0.25
    done
    say "$1 ($pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$STATE/run/$1.pid"
}

stop_daemons() {
    local f i
    # Jobs first, so that no job step outlives its slurmd; wait (bounded) for them to end.
    if [ "${1:-}" != quiet ] && daemon_pid slurmctld >/dev/null; then
        timeout 10 scancel --quiet --user="$(id -un)" 2>/dev/null || true
        for i in $(seq 1 30); do
            [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    # Then the daemons top-down: every node's slurmd (also of an earlier, larger cluster), ...
    for f in "$STATE"/run/slurmd-*.pid; do
        [ -e "$f" ] && stop_one "$(basename "$f" .pid)"
    done
    stop_one slurmctld
    stop_one munged
}

stop() {
    stop_daemons
    say "stopped (logs kept in $STATE/log)"
}

status() {
    local d pid rc=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$d"); then say "$d running (pid $pid)"; else say "$d not running"; rc=1; fi
    done
    if [ $rc = 0 ]; then
        timeout 10 sinfo -N || rc=1
    fi
    say "clients: export SLURM_CONF=$CONF"
    return $rc
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
