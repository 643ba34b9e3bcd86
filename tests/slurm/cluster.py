"""Submitting jobs/*.sbatch to a real Slurm cluster from tests, and waiting for them (bounded).

The cluster is the one ``scripts/slurm-local.sh start`` stands up (found through SLURM_CONF, or
``$MPIRL_SLURM_DIR/slurm.conf``), or any other whose ``sinfo`` answers. Jobs run with the test's
interpreter (MPIRL_VENV = this venv) and this checkout (MPIRL_ROOT), in a temporary working
directory, so their logs and run directories land there.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "jobs"
# Where scripts/slurm-local.sh keeps the local cluster (the same default as there).
LOCAL_CONF = Path(os.environ.get("MPIRL_SLURM_DIR")
                  or os.path.join(os.environ.get("TMPDIR") or "/tmp", "mpirl-slurm")) / "slurm.conf"
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE"}


def slurm_env() -> dict:
    """The environment for Slurm commands and the jobs they start."""
    env = dict(os.environ)
    if "SLURM_CONF" not in env and LOCAL_CONF.exists():
        env["SLURM_CONF"] = str(LOCAL_CONF)
    env.update(MPIRL_ROOT=str(ROOT), MPIRL_VENV=sys.prefix, PYTHONUNBUFFERED="1")
    # A test run inside a Slurm job must not pass that job's identity on to the jobs it submits.
    for name in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del env[name]
    # Nor Open MPI's permissions: the job scripts (jobs/lib.sh) must set them where they are needed,
    # as they would for a user who submits from a login shell without them.
    for name in [k for k in env if k.startswith("OMPI_")]:
        del env[name]
    return env


def slurm(*args: str, timeout: float = 30, check: bool = True) -> str:
    """Run a Slurm command (sinfo, sbatch, scontrol, scancel); its stdout."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          env=slurm_env())
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def cluster_problem() -> str | None:
    """None when a cluster answers and has a node that takes jobs; else why not."""
    conf = slurm_env().get("SLURM_CONF") or "/etc/slurm/slurm.conf"
    if not os.path.exists(conf):  # (sinfo would spend its timeout looking for one in DNS)
        return f"no Slurm configuration ({conf} does not exist)"
    try:
        states = slurm("sinfo", "-h", "-o", "%t", timeout=15).split()
    except FileNotFoundError:
        return "Slurm's commands are not installed"
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"sinfo does not answer ({exc})"
    if not any(s.rstrip("*~#") in ("idle", "mix", "alloc") for s in states):
        return f"no node takes jobs (sinfo states: {states})"
    return None


@dataclass
class Task:
    """One job (or array task) as ``scontrol show job`` describes it."""

    fields: dict

    @property
    def state(self) -> str:
        return self.fields.get("JobState", "?")

    @property
    def exit_code(self) -> int:
        return int(self.fields.get("ExitCode", "0:0").split(":")[0])

    @property
    def restarts(self) -> int:
        return int(self.fields.get("Restarts", "0"))

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def show(job_id: str) -> list[Task]:
    """Every task of the job (one for a plain job, one per index for an array)."""
    out = slurm("scontrol", "-o", "show", "job", job_id, check=False)
    return [Task(dict(re.findall(r"(\w+)=(\S*)", line))) for line in out.splitlines() if line]


def submit(script: str, trainer_args: list[str], sbatch_args: list[str] = (), cwd: Path = ROOT,
           env: dict | None = None) -> str:
    """``sbatch [SBATCH_ARGS] jobs/SCRIPT TRAINER_ARGS`` from ``cwd``; the job id."""
    proc = subprocess.run(["sbatch", "--parsable", *sbatch_args, str(JOBS / script), *trainer_args],
                          capture_output=True, text=True, timeout=30, cwd=cwd,
                          env={**slurm_env(), **(env or {})})
    assert proc.returncode == 0, f"sbatch failed: {proc.stderr}"
    return proc.stdout.strip().split(";")[0]


def wait(job_id: str, timeout: float, logs: Path | None = None, until=None) -> list[Task]:
    """Poll until every task has finished (or ``until(tasks)`` is true); cancel on timeout.

    Polls twice a second: ``sbatch --wait`` backs off to tens of seconds between looks.
    """
    deadline = time.monotonic() + timeout
    while True:
        tasks = show(job_id)
        if tasks and (until(tasks) if until else all(t.finished for t in tasks)):
            return tasks
        if time.monotonic() > deadline:
            slurm("scancel", "--full", job_id, check=False)
            raise AssertionError(f"job {job_id} still {[t.state for t in tasks]} after {timeout}s"
                                 + (f"\n{read_logs(logs)}" if logs else ""))
        time.sleep(0.5)


def read_logs(directory: Path) -> str:
    """Every job log (*.out) in ``directory``, for assertion messages."""
    return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(directory.glob("*.out")))
