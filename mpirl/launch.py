"""Launching MPI jobs from tests and benchmarks: always in a subprocess, always under a timeout.

A hang is a failure, never a wait: on timeout the whole process group (mpirun and every rank)
is killed and the caller gets what the job printed so far (``Result.check()`` raises).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout (working directory for launches)

# Open MPI refuses root and oversubscription unless told; yield when idle so that more ranks
# than cores do not starve each other.
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMPI_MCA_mpi_yield_when_idle": "1",
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class Result:
    returncode: int
    output: str          # stdout and stderr interleaved
    seconds: float
    timed_out: bool

    def check(self) -> "Result":
        assert not self.timed_out, f"timed out after {self.seconds:.0f}s:\n{self.output[-6000:]}"
        assert self.returncode == 0, f"exit code {self.returncode}:\n{self.output[-6000:]}"
        return self


def run(cmd: list[str], timeout: float, env: dict | None = None, cwd: str | Path | None = None,
        on_start=None) -> Result:
    """Run ``cmd`` in its own process group; kill the group if it outlives ``timeout``.

    ``on_start(proc)`` (optional) is called once the process is running, e.g. to send signals.
    """
    full_env = {**os.environ, **MPI_ENV, **(env or {})}
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=full_env, cwd=str(cwd or ROOT), start_new_session=True)
    if on_start is not None:
        on_start(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    return Result(proc.returncode, out, time.monotonic() - t0, timed_out)


def mpirun(nprocs: int, args: list[str], timeout: float = 120, **kw) -> Result:
    """``mpirun -n nprocs python ARGS...`` with this interpreter."""
    return run(["mpirun", "-n", str(nprocs), sys.executable, *args], timeout=timeout, **kw)


def train(nprocs: int, args: list[str], timeout: float = 180, **kw) -> Result:
    """The trainer as a user runs it: ``mpirun -n N python -m mpirl.train ARGS``."""
    if nprocs == 0:  # plain python, no mpirun
        return run([sys.executable, "-m", "mpirl.train", *args], timeout=timeout, **kw)
    return mpirun(nprocs, ["-m", "mpirl.train", *args], timeout=timeout, **kw)


def train_summary(nprocs: int, args: list[str], timeout: float = 900, **kw) -> dict:
    """Run the trainer (``args`` must include --run-dir) and return its summary.json."""
    import json
    run_dir = args[args.index("--run-dir") + 1]
    train(nprocs, args, timeout=timeout, **kw).check()
    with open(Path(run_dir) / "summary.json") as fh:
        return json.load(fh)
