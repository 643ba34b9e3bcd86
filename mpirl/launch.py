"""Launching MPI jobs from tests and benchmarks: always in a subprocess, always under a timeout.

A hang is a failure, never a wait: on timeout the whole process group (the launcher and every
rank) is killed and the caller gets what the job printed so far (``Result.check()`` raises).

The launcher is the one of the MPI this interpreter's mpi4py uses, found rather than assumed:
``MPIRL_MPIEXEC``, else an ``mpiexec`` installed beside this interpreter (the ``mpich`` wheel
puts one in the virtual environment), else ``mpiexec`` or ``mpirun`` on PATH. Open MPI's
variables (run as root, more ranks than cores, yield when idle) are set only where Open MPI
launches.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout (working directory for launches)

# Open MPI refuses root and oversubscription unless told; yield when idle so that more ranks
# than cores do not starve each other. (MPICH needs none of these.)
OPEN_MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMPI_MCA_mpi_yield_when_idle": "1",
}


@functools.lru_cache(maxsize=None)
def mpiexec() -> str:
    """The launcher of the MPI that mpi4py uses here (see the module's docstring)."""
    if os.environ.get("MPIRL_MPIEXEC"):
        return os.environ["MPIRL_MPIEXEC"]
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    return shutil.which("mpiexec") or shutil.which("mpirun") or "mpiexec"


@functools.lru_cache(maxsize=None)
def is_open_mpi(launcher: str) -> bool:
    try:
        out = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in out.stdout + out.stderr or "OpenRTE" in out.stdout + out.stderr


def mpi_env() -> dict:
    """The variables every launch gets: Open MPI's where it launches, unbuffered output."""
    return {**(OPEN_MPI_ENV if is_open_mpi(mpiexec()) else {}), "PYTHONUNBUFFERED": "1"}


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
    full_env = {**os.environ, **mpi_env(), **(env or {})}
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
    """``mpiexec -n nprocs python ARGS...`` with this interpreter and its MPI's launcher."""
    return run([mpiexec(), "-n", str(nprocs), sys.executable, *args], timeout=timeout, **kw)


def train(nprocs: int, args: list[str], timeout: float = 180, **kw) -> Result:
    """The trainer as a user runs it: ``mpiexec -n N python -m mpirl.train ARGS``."""
    if nprocs == 0:  # plain python, no launcher
        return run([sys.executable, "-m", "mpirl.train", *args], timeout=timeout, **kw)
    return mpirun(nprocs, ["-m", "mpirl.train", *args], timeout=timeout, **kw)


def train_summary(nprocs: int, args: list[str], timeout: float = 900, **kw) -> dict:
    """Run the trainer (``args`` must include --run-dir) and return its summary.json."""
    import json
    run_dir = args[args.index("--run-dir") + 1]
    train(nprocs, args, timeout=timeout, **kw).check()
    with open(Path(run_dir) / "summary.json") as fh:
        return json.load(fh)
