#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, from Debian's packages, for trying and testing jobs/.
#
#   scripts/slurm-local.sh install   # apt-get slurmctld, slurmd, slurm-client, munge (root)
#   scripts/slurm-local.sh start     # install if needed, then munged + slurmctld + slurmd; waits
#                                    # until the node is idle. Idempotent: a healthy cluster is kept.
#   scripts/slurm-local.sh status    # daemons, sinfo, and the SLURM_CONF line to export
#   scripts/slurm-local.sh stop      # stops the daemons (state dir kept for their logs)
#
# Everything lives under $MPIRL_SLURM_DIR (default ${TMPDIR:-/tmp}/mpirl-slurm): slurm.conf, the
# munge key and socket, state, spool and logs. Clients find the cluster through SLURM_CONF:
#   export SLURM_CONF=$MPIRL_SLURM_DIR/slurm.conf        (`status` prints the line)
# When this machine has no /etc/slurm/slurm.conf of its own, `start` also links it there, so plain
# `sinfo` / `sbatch` work without the export; a real site's config is never touched.
#
# The node claims $MPIRL_SLURM_CPUS CPUs (default 16) whatever the machine has
# (SlurmdParameters=config_overrides), so 8-task jobs fit on a 2-core box; ranks then share cores.
# Every wait is bounded: a daemon that does not come up fails `start` with its log's tail.
set -euo pipefail

STATE=${MPIRL_SLURM_DIR:-${TMPDIR:-/tmp}/mpirl-slurm}
CPUS=${MPIRL_SLURM_CPUS:-16}
CTLD_PORT=${MPIRL_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${MPIRL_SLURMD_PORT:-6818}
START_TIMEOUT=${MPIRL_SLURM_START_TIMEOUT:-60}   # seconds for each daemon / the node to come up
NODE=localhost
CONF=$STATE/slurm.conf
MUNGE_SOCKET=$STATE/munge/munge.socket
SYSTEM_CONF=/etc/slurm/slurm.conf
export SLURM_CONF=$CONF

say() { printf '[slurm-local] %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

# -- install -------------------------------------------------------------------------------
PACKAGES=(slurmctld slurmd slurm-client munge libpmix2)
missing_tools() {
    local t
    for t in slurmctld slurmd sinfo sbatch srun scontrol munged mungekey; do
        command -v "$t" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$t" >/dev/null 2>&1 \
            || echo "$t"
    done
}

install() {
    export PATH=$PATH:/usr/sbin:/sbin
    if [ -z "$(missing_tools)" ]; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "Slurm is not installed and only root can install it (apt-get install ${PACKAGES[*]})"
    command -v apt-get >/dev/null || die "Slurm is not installed and this is not a Debian/Ubuntu machine"
    say "installing ${PACKAGES[*]} (missing: $(missing_tools | tr '\n' ' '))"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has no package lists; refresh them once, then again only if install fails.
    if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
        timeout 300 apt-get update -qq
    fi
    if ! timeout 600 apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null; then
        timeout 300 apt-get update -qq
        timeout 600 apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    fi
    [ -z "$(missing_tools)" ] || die "still missing after install: $(missing_tools | tr '\n' ' ')"
}

# -- configuration --------------------------------------------------------------------------
write_config() {
    mkdir -p "$STATE"/{munge,ctld,spool,log,run}
    chmod 700 "$STATE/munge"
    if [ ! -s "$STATE/munge/munge.key" ]; then
        mungekey -c -k "$STATE/munge/munge.key"
    fi
    chmod 600 "$STATE/munge/munge.key"
    cat > "$CONF.new" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on localhost for mpirl's jobs and tests.
ClusterName=mpirl-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job starts again only once its old credential has expired: cred_expire=10
# (default 120) keeps that wait to seconds.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Work in containers and on small boxes: no cgroups, no CPU binding.
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
# Snappy turnaround for tests: schedule every second, keep finished jobs visible for 10 min.
ReturnToService=2
SchedulerParameters=sched_interval=1
MessageTimeout=30
KillWait=10
InactiveLimit=0
MinJobAge=600
SlurmdTimeout=300
SlurmctldTimeout=120
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.new" "$CONF"
    # Let plain `sinfo` find this cluster, unless the machine already has a Slurm of its own.
    if [ ! -e "$SYSTEM_CONF" ] || [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then
        { mkdir -p "$(dirname "$SYSTEM_CONF")" && ln -sfn "$CONF" "$SYSTEM_CONF"; } 2>/dev/null || true
    fi
}

# -- daemons --------------------------------------------------------------------------------
pid_of() {  # pid_of NAME: the pid in NAME's pid file, if that process is alive and is NAME
    local file=$STATE/run/$1.pid pid
    [ -s "$file" ] || return 1
    pid=$(cat "$file")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1  # not a reused pid
    echo "$pid"
}

wait_for() {  # wait_for WHAT LOG CMD...: retry CMD every 0.5 s for START_TIMEOUT seconds
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
node_up() {  # the node takes jobs: idle, or already running some (mix, alloc)
    case "$(timeout 10 sinfo -h -n "$NODE" -o %t 2>/dev/null)" in idle|mix|alloc) return 0 ;; esac
    return 1
}

start() {
    install
    export PATH=$PATH:/usr/sbin:/sbin
    if pid_of munged >/dev/null && pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null \
            && [ -s "$CONF" ] && ctld_ok && node_up; then
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
    # -i: ignore state left by an earlier run of this cluster (old jobs, old node state).
    timeout 30 slurmctld -i -f "$CONF"
    wait_for slurmctld "$STATE/log/slurmctld.log" ctld_ok

    say "starting slurmd"
    timeout 30 slurmd -f "$CONF" -N "$NODE"
    wait_for "slurmd (node $NODE idle)" "$STATE/log/slurmd.log" node_up || {
        scontrol show node "$NODE" >&2 || true; return 1; }
    say "ready: $(sinfo -h -o '%P %D node(s), %c CPUs, %t' | head -1)"
    say "clients: export SLURM_CONF=$CONF"
}

stop_one() {  # stop_one NAME: TERM, then KILL after 10 s
    local pid i
    pid=$(pid_of "$1") || return 0
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
    # Jobs first (so slurmd does not leave orphaned steps), then the daemons top-down.
    if [ "${1:-}" != quiet ] && pid_of slurmctld >/dev/null; then
        timeout 10 scancel --quiet --full --user="$(id -un)" 2>/dev/null || true
    fi
    stop_one slurmd
    stop_one slurmctld
    stop_one munged
}

stop() {
    stop_daemons
    say "stopped (logs kept in $STATE/log)"
}

status() {
    local name pid rc=0
    for name in munged slurmctld slurmd; do
        if pid=$(pid_of "$name"); then say "$name running (pid $pid)"; else say "$name not running"; rc=1; fi
    done
    if [ $rc = 0 ]; then
        timeout 10 sinfo || rc=1
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
