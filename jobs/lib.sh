# Sourced by every jobs/*.sbatch: the environment a job runs in and how it launches the trainer.
#
# Variables a user may set (export them before sbatch, or edit here for a site):
#   MPIRL_ROOT      the mpirl checkout (default: the directory sbatch was run from)
#   MPIRL_VENV      its virtual environment (default: $MPIRL_ROOT/.venv; python from PATH if absent)
#   MPIRL_LAUNCHER  srun (default: srun --mpi=$MPIRL_SRUN_MPI) or mpiexec (the MPI library's own,
#                   inside the allocation; mpirun is taken as its other name)
#   MPIRL_SRUN_MPI  srun's PMI plugin (default pmix; `srun --mpi=list` shows the site's)
#   MPIRL_RUNS      where run directories go (default: runs/ in the job's working directory)

# -- the environment ---------------------------------------------------------------------------
MPIRL_ROOT=${MPIRL_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
MPIRL_VENV=${MPIRL_VENV:-$MPIRL_ROOT/.venv}
if [ -f "$MPIRL_VENV/bin/activate" ]; then
    # shellcheck disable=SC1091
    source "$MPIRL_VENV/bin/activate"
else
    echo "[mpirl job] no virtual environment at $MPIRL_VENV: using $(command -v python3 || echo 'no python3')" >&2
fi
# Where Open MPI runs, it refuses root and more ranks than cores unless told; idle ranks yield the
# CPU. Other MPIs (MPICH, Intel MPI, Cray MPICH) need none of this.
if mpiexec --version 2>/dev/null | grep -qE "Open MPI|OpenRTE"; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
fi
# Threads per rank from --cpus-per-task; srun (since Slurm 22.05) does not inherit it by itself.
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-1}
export PYTHONUNBUFFERED=1
MPIRL_LAUNCHER=${MPIRL_LAUNCHER:-srun}
MPIRL_SRUN_MPI=${MPIRL_SRUN_MPI:-pmix}
MPIRL_RUNS=${MPIRL_RUNS:-$PWD/runs}

say() { echo "[mpirl job $(date -u +%H:%M:%S)] $*"; }

# The run directory, named like the log: <job name>_<job id>, or <name>_<array id>_<task> for an
# array task (mpirl.slurm.SlurmJob.run_dir names it the same way).
job_tag() {
    if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    else echo "$SLURM_JOB_ID"; fi
}
RUN_DIR=$MPIRL_RUNS/${SLURM_JOB_NAME%.sbatch}_$(job_tag)

# -- launching -----------------------------------------------------------------------------------
# The command line that starts `python -m mpi4py ARGS` as one MPI job of N ranks, in LAUNCH:
#   launcher N && "${LAUNCH[@]}" -m mpirl.train ...
# (an array rather than a function, so that run_stoppable can signal the launcher itself).
launcher() {
    case "$MPIRL_LAUNCHER" in
        srun) LAUNCH=(srun --mpi="$MPIRL_SRUN_MPI" --ntasks="$1" --kill-on-bad-exit=1) ;;
        mpiexec|mpirun) LAUNCH=(mpiexec -n "$1") ;;
        *) say "MPIRL_LAUNCHER must be srun or mpiexec, not '$MPIRL_LAUNCHER'"; return 2 ;;
    esac
    LAUNCH+=(python -m mpi4py)
}

launch() {  # launch N ARGS...: run `python -m mpi4py ARGS` as one MPI job of N ranks
    local ntasks=$1
    shift
    launcher "$ntasks" && "${LAUNCH[@]}" "$@"
}

# Run the command "$@" (a program, not a shell function) in the background and pass stop requests
# on to it: SIGUSR1 (sent ahead of a time limit by --signal=B:USR1@T, or by `scancel --signal=USR1
# --batch`) and SIGTERM both reach the launcher as SIGUSR1, which srun and mpirun forward to every
# rank; the trainer then checkpoints at the next update boundary and exits 0. STOP_SIGNAL tells
# afterwards whether a request came.
STOP_SIGNAL=""
run_stoppable() {
    local child rc=0
    "$@" &
    child=$!
    trap 'STOP_SIGNAL=USR1; say "got SIGUSR1: asking the trainer to checkpoint and stop"; kill -USR1 $child 2>/dev/null' USR1
    trap 'STOP_SIGNAL=TERM; say "got SIGTERM: asking the trainer to checkpoint and stop"; kill -USR1 $child 2>/dev/null' TERM
    wait "$child" || rc=$?
    while kill -0 "$child" 2>/dev/null; do  # a trapped signal ends `wait` early: wait again
        rc=0
        wait "$child" || rc=$?
    done
    trap - USR1 TERM
    return "$rc"
}

has_checkpoint() {  # has_checkpoint DIR: the run in DIR left a checkpoint to resume from
    compgen -G "$1/checkpoints/ckpt_*.pt" >/dev/null
}

was_preempted() {  # was_preempted DIR: the trainer in DIR stopped early (on a signal), not done
    grep -q '"status": *"preempted"' "$1/summary.json" 2>/dev/null
}

describe_job() {
    say "job ${SLURM_JOB_ID} (${SLURM_JOB_NAME}) on ${SLURM_JOB_NODELIST:-?}: ${SLURM_NTASKS:-1} tasks" \
        "x ${SLURM_CPUS_PER_TASK:-1} CPUs, launcher=$MPIRL_LAUNCHER, python=$(command -v python)"
}
