"""What a run needs to know about Slurm: which job it is, and whether MPI's world is the one
Slurm meant to start.

The classic cluster mistake: ``srun -n 8 python -m mpirl.train`` with an MPI library (or an
mpi4py built against one) that has no Slurm support. Each of the 8 tasks then initialises MPI on
its own and becomes a world of ONE rank: eight independent runs that each believe they are the
whole job, racing to write the same run directory. :func:`check_world_size` turns that into one
clear error before any work is done.

Only environment variables are read here (no MPI calls), so the checks are plain functions of
``(world size, environment)`` and can be tested without a cluster.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from mpirl.errors import ConfigError


class WorldSizeError(ConfigError):
    """MPI's world size differs from the number of tasks the launcher started (bad input: the
    trainer reports it once and exits 2, before any training)."""


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class SlurmJob:
    """The Slurm job this process runs in, as its environment describes it."""

    job_id: str              # SLURM_JOB_ID (an array task has its own)
    name: str                # SLURM_JOB_NAME (the script's name unless --job-name)
    array_job_id: str | None  # SLURM_ARRAY_JOB_ID: the array's id (%A in file names)
    array_task_id: str | None  # SLURM_ARRAY_TASK_ID: this task's index (%a)
    restart_count: int       # SLURM_RESTART_COUNT: times this job was requeued so far

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SlurmJob | None":
        """The job, or None when not running under Slurm."""
        env = os.environ if env is None else env
        job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
        if not job_id:
            return None
        return cls(job_id=job_id, name=env.get("SLURM_JOB_NAME", "job"),
                   array_job_id=env.get("SLURM_ARRAY_JOB_ID"),
                   array_task_id=env.get("SLURM_ARRAY_TASK_ID"),
                   restart_count=_int(env, "SLURM_RESTART_COUNT") or 0)

    @property
    def tag(self) -> str:
        """``<jobid>``, or ``<arrayjobid>_<taskid>`` for an array task: Slurm's %j / %A_%a."""
        if self.array_job_id and self.array_task_id is not None:
            return f"{self.array_job_id}_{self.array_task_id}"
        return self.job_id

    def run_dir(self, root: str = "runs") -> str:
        """``<root>/<job name>_<tag>``: the run directory named like the job's log file.

        jobs/lib.sh names run directories the same way, so a job's log ``train_1234.out`` sits
        beside ``runs/train_1234``.
        """
        name = self.name.removesuffix(".sbatch")
        return os.path.join(root, f"{name}_{self.tag}")


def expected_world_size(env: Mapping[str, str] | None = None) -> tuple[int, str] | None:
    """How many ranks the launcher meant to start, and which variable says so.

    None outside Slurm. Inside a job, in order of authority:

    - ``OMPI_COMM_WORLD_SIZE`` / ``PMI_SIZE``: mpirun/mpiexec (or Slurm's PMI) launched us and
      says how many ranks it started (``mpirun -n 2`` inside a 4-task job is fine);
    - ``SLURM_STEP_NUM_TASKS``: srun started us directly as a step of N tasks;
    - ``SLURM_NTASKS``: the batch script ran python itself, without any launcher.
    """
    env = os.environ if env is None else env
    if SlurmJob.from_env(env) is None:
        return None
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        value = _int(env, name)
        if value:
            return value, name
    return None


def check_world_size(size: int, env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`WorldSizeError` when MPI's world (``size`` ranks) is not what Slurm started."""
    expected = expected_world_size(env)
    if expected is None or expected[0] == size:
        return
    tasks, source = expected
    env = os.environ if env is None else env
    if size == 1 and source == "SLURM_STEP_NUM_TASKS":
        raise WorldSizeError(
            f"Slurm started {tasks} tasks ({source}={tasks}) but MPI sees a world of 1 rank: this "
            f"MPI library has no Slurm support, so srun launched {tasks} separate single-rank "
            f"copies instead of one {tasks}-rank job. Launch with the PMI plugin your MPI was "
            f"built for (`srun --mpi=pmix`; see `srun --mpi=list`), or use mpirun inside the "
            f"allocation (MPIRL_LAUNCHER=mpiexec in jobs/*.sbatch), and make sure mpi4py is built "
            f"against the site's MPI (see README.md, 'Running on a Slurm cluster').")
    if size == 1 and source == "SLURM_NTASKS":
        raise WorldSizeError(
            f"this Slurm job has {tasks} tasks (SLURM_NTASKS={tasks}) but the trainer runs as a "
            f"single process: start it with `srun --mpi=pmix python -m mpi4py -m mpirl.train` or "
            f"`mpirun python -m mpirl.train` inside the job, or ask for --ntasks=1.")
    raise WorldSizeError(
        f"MPI's world has {size} ranks but the launcher started {tasks} ({source}={tasks}"
        f"{', SLURM_JOB_ID=' + env['SLURM_JOB_ID'] if 'SLURM_JOB_ID' in env else ''}): the MPI "
        f"library that mpi4py loaded is not the one that launched this job. Build mpi4py against "
        f"the MPI whose launcher you use (see README.md, 'Running on a Slurm cluster').")
