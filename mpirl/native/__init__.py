"""C kernels for the few loops numpy can only run as many small calls or many passes over memory.

``kernels.c`` holds them: the sum-tree's batched update and search (a prioritized draw is a
dozen small numpy calls per tree level) and the Bellman backup of a tabular MDP (one pass over the
transitions instead of a gather, a product and a sum, each a pass of its own); and two loops that
only read, which the MDP benchmark times as a sweep's floors. Every hot loop has a numpy twin next
to its caller: the reference the tests compare against, and the fallback.

:func:`kernels` compiles the source once per machine with the system C compiler (``cc -O2``,
portable: no ``-march=native``, since a cluster's nodes may differ; no fused multiply-adds, which
some compilers and CPUs would otherwise make of a product and a sum, so that every machine
rounds alike) into a cache directory, and loads it with ctypes. ``make setup`` builds it ahead
(``python -m mpirl.native``), so that the ranks of a job do not all compile at once. Without a
compiler, or with ``MPIRL_NATIVE=0``, it returns None and the callers use numpy: slower, and
equal to within rounding (numpy sums a row in another order; the tests hold the two to 1e-12).
``MPIRL_SIMD=0`` keeps the kernels but not their AVX2 loop (see :data:`SWITCHES`).
"""
from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ("-O2", "-shared", "-fPIC", "-std=c99", "-ffp-contract=off")

_i64, _f64, _ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
SIGNATURES = {   # name: (result, argument types); arrays are passed as raw pointers (ptr)
    "sumtree_update": (ctypes.c_int, [_ptr, _i64, _i64, _i64, _ptr, _ptr, _i64]),
    "sumtree_find": (None, [_ptr, _i64, _i64, _i64, _ptr, _i64, _ptr, _ptr]),
    "sumtree_total": (_f64, [_ptr, _i64]),
    "bellman_q": (None, [_ptr, _i64, _ptr, _ptr, _ptr, _ptr, _f64, _i64, _ptr]),
    "bellman_max": (_f64, [_ptr, _i64, _ptr, _ptr, _ptr, _ptr, _f64, _i64, _i64, _ptr, _ptr]),
    "read_in_order": (ctypes.c_uint64, [_ptr, _i64]),
    "read_at": (_f64, [_ptr, _ptr, _i64]),
}
# The library's switches (C ints it reads on each call); they change speed, never a result.
SWITCHES = {
    "mpirl_simd": "the AVX2 loop of the backup: -1 (the default) where the CPU has AVX2, 0 never "
                  "(MPIRL_SIMD=0, and the tests that compare both paths)",
    "mpirl_stream_hint": "how the four-action AVX2 backup prefetches P: -1 (the default) from the "
                         "CPU (non-temporal on AMD, T0 elsewhere), 0 T0, 1 non-temporal",
}


def cache_dir() -> Path:
    """Where built libraries live: $MPIRL_CACHE_DIR, else $XDG_CACHE_HOME/mpirl or ~/.cache/mpirl."""
    if os.environ.get("MPIRL_CACHE_DIR"):
        return Path(os.environ["MPIRL_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mpirl"


def library_path() -> Path:
    """The library's path, named by a hash of the source, flags and machine (a changed source
    never loads a stale build)."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode()
                         + platform.machine().encode()).hexdigest()[:16]
    return cache_dir() / f"kernels-{key}.so"


def build() -> Path:
    """Compile the kernels unless already built; returns the library's path. Raises
    RuntimeError with the compiler's message when compiling fails."""
    path = library_path()
    if path.exists():
        return path
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler found (cc or gcc; or set CC)")
    path.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time (the ranks of a job may all get here); the others wait, then load.
    with open(path.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
            os.close(fd)
            try:
                done = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp, "-lm"],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"{compiler} failed on {SOURCE}:\n{done.stderr.strip()}")
                os.replace(tmp, path)    # atomic: a reader never sees half a library
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    return path


@functools.cache
def kernels() -> ctypes.CDLL | None:
    """The loaded kernels, or None (numpy is used) when disabled or they cannot be built."""
    if os.environ.get("MPIRL_NATIVE", "1") == "0":
        return None
    try:
        lib = ctypes.CDLL(str(build()))
    except (OSError, RuntimeError) as err:
        if _launch_rank() == 0:   # once per job, not once per rank
            warnings.warn(f"mpirl: C kernels unavailable, using numpy (slower): {err}",
                          stacklevel=2)
        return None
    for name, (result, args) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = result, args
    simd = switch(lib, "mpirl_simd")
    if simd is not None and os.environ.get("MPIRL_SIMD", "1") == "0":
        simd.value = 0
    return lib


def switch(lib: ctypes.CDLL, name: str) -> ctypes.c_int | None:
    """One of the library's :data:`SWITCHES`, to read or set; None where the build has no such
    loop (not x86-64, or not GCC or clang)."""
    if name not in SWITCHES:
        raise KeyError(f"no switch {name!r}; the kernels have {sorted(SWITCHES)}")
    try:
        return ctypes.c_int.in_dll(lib, name)
    except ValueError:
        return None


def _launch_rank() -> int:
    """This process's rank as the MPI launcher or Slurm tells it (0 when launched alone); read
    from the environment because the kernels load before, and without, any communicator."""
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def main() -> int:
    """``python -m mpirl.native``: build the kernels now and say where they are."""
    try:
        print(f"mpirl C kernels: {build()}")
    except RuntimeError as err:
        print(f"mpirl C kernels not built ({err}); numpy will be used", file=sys.stderr)
        return 1
    return 0
