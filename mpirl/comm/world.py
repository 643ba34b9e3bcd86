"""The MPI world a training run lives in: ranks, sub-communicators, seeds, threads, aborts.

Everything else in mpirl reaches MPI through a :class:`World` (and the helpers in
``collectives`` and ``p2p``), so a single process started without ``mpirun`` is simply a world of
size 1 running the same code path.
"""
from __future__ import annotations

import ctypes
import os
import sys
import traceback
from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI


@dataclass
class World:
    """One communicator and what a rank needs to know about it.

    ``comm`` is the communicator this world spans (COMM_WORLD or a sub-communicator made with
    :meth:`split`); ``rank`` and ``size`` are this process's place in it.
    """

    comm: MPI.Comm = field(default_factory=lambda: MPI.COMM_WORLD)

    @property
    def rank(self) -> int:
        return self.comm.Get_rank()

    @property
    def size(self) -> int:
        return self.comm.Get_size()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def world_rank(self) -> int:
        """This process's rank in COMM_WORLD, for messages that must name it."""
        return MPI.COMM_WORLD.Get_rank()

    # -- communicators -------------------------------------------------------------------
    def split(self, color: int, key: int | None = None) -> "World":
        """A sub-world of the ranks that pass the same ``color`` (ordered by ``key``, default rank)."""
        return World(self.comm.Split(color, self.rank if key is None else key))

    def dup(self) -> "World":
        """The same ranks on a communicator of their own, whose messages never match this
        one's (collective)."""
        return World(self.comm.Dup())

    def barrier(self) -> None:
        self.comm.Barrier()

    # -- small control messages (pickled; never for bulk data) -----------------------------
    def bcast_obj(self, obj, root: int = 0):
        return self.comm.bcast(obj, root=root)

    def gather_obj(self, obj, root: int = 0):
        return self.comm.gather(obj, root=root)

    def allgather_obj(self, obj):
        return self.comm.allgather(obj)

    def scatter_obj(self, objs: list | None, root: int = 0):
        """Rank ``root``'s ``objs[r]`` on each rank r (``objs`` is read on ``root`` only)."""
        return self.comm.scatter(objs, root=root)

    def any_rank(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (one tiny Allreduce)."""
        buf = np.array([1 if flag else 0], dtype=np.int32)
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
        return bool(buf[0])

    def all_ranks(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on every rank."""
        return not self.any_rank(not flag)

    # -- node layout, threads and seeds -----------------------------------------------------
    def node_local(self) -> tuple[int, int]:
        """(rank among the ranks on this node, number of ranks on this node)."""
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        try:
            return local.Get_rank(), local.Get_size()
        finally:
            local.Free()

    def threads_per_rank(self) -> int:
        """This rank's share of the node's cores.

        SLURM_CPUS_PER_TASK or OMP_NUM_THREADS win when set; otherwise cores / ranks on the node,
        at least 1, which is collective (it splits the world by node): every rank must call it,
        and see the same variables. Oversubscribed ranks that each spin up all cores' worth of
        threads are much slower than ranks that share fairly.
        """
        for var in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
            value = os.environ.get(var, "")
            if value.isdigit() and int(value) > 0:
                return int(value)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        _, local_size = self.node_local()
        return max(1, (cores or 1) // local_size)

    def rank_seed(self, seed: int, stream: int = 0) -> int:
        """A distinct, reproducible 32-bit seed for (seed, world rank, stream)."""
        seq = np.random.SeedSequence([seed, self.world_rank, stream])
        return int(seq.generate_state(1, dtype=np.uint32)[0])

THREAD_LEVELS = {MPI.THREAD_SINGLE: "single", MPI.THREAD_FUNNELED: "funneled",
                 MPI.THREAD_SERIALIZED: "serialized", MPI.THREAD_MULTIPLE: "multiple"}


def cuda_aware() -> bool | None:
    """Whether the MPI library takes CUDA device buffers (Open MPI's and MPICH's
    MPIX_Query_cuda_support), or None where it cannot say."""
    query = getattr(ctypes.CDLL(None), "MPIX_Query_cuda_support", None)
    return None if query is None else bool(query())


def describe_mpi() -> str:
    """The MPI library this process runs on, its thread support and CUDA awareness: one line."""
    library = " ".join(MPI.Get_library_version().splitlines()[0].split())
    library = library.split(",")[0] if library.startswith("Open MPI") else library
    aware = {True: "yes", False: "no", None: "unknown"}[cuda_aware()]
    return (f"MPI: {library} (thread support: {THREAD_LEVELS.get(MPI.Query_thread(), '?')}, "
            f"CUDA-aware: {aware})")


def abort_job(code: int = 1) -> None:
    """End every rank of the job now (MPI_Abort on the world): the caller has printed why."""
    MPI.COMM_WORLD.Abort(code)


def install_abort_on_error(code: int = 1) -> None:
    """Make an uncaught exception on any rank abort the whole job, naming the rank and the cause.

    Without this, one rank dying leaves the others blocked in their next collective forever.
    In a world of size 1 the ordinary traceback and exit are kept.
    """
    if MPI.COMM_WORLD.Get_size() == 1:
        return

    def hook(exc_type, exc, tb):
        rank = MPI.COMM_WORLD.Get_rank()
        if issubclass(exc_type, KeyboardInterrupt):   # Ctrl-C: no traceback, but end the job
            sys.stderr.write(f"[mpirl rank {rank}] interrupted\n")
            sys.stderr.flush()
            MPI.COMM_WORLD.Abort(130)
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(f"[mpirl rank {rank}] failed: {exc_type.__name__}: {exc}\n{text}")
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(code)

    sys.excepthook = hook


@dataclass
class Grid:
    """A 2-D process grid: ``replicas`` data-parallel copies of a ``stages``-stage pipeline.

    World rank r holds stage ``r % stages`` of replica ``r // stages``, so the ranks of one
    pipeline are neighbours (cheap point-to-point on one node) and each stage's data-parallel
    group strides across replicas.

    ``pipe`` spans the stages of this rank's replica (point-to-point activations/gradients);
    ``data`` spans this stage across all replicas (gradient averaging).
    """

    world: World
    stages: int
    pipe: World
    data: World

    @property
    def stage(self) -> int:
        return self.pipe.rank

    @property
    def replica(self) -> int:
        return self.data.rank

    @property
    def replicas(self) -> int:
        return self.data.size

    @classmethod
    def build(cls, world: World, stages: int = 1) -> "Grid":
        if stages < 1 or world.size % stages:
            raise ValueError(f"{world.size} ranks cannot be split into pipelines of {stages} stages")
        if stages == 1:  # no need for new communicators: every rank is a whole model
            return cls(world=world, stages=1, pipe=World(MPI.COMM_SELF), data=world)
        pipe = world.split(color=world.rank // stages, key=world.rank % stages)
        data = world.split(color=world.rank % stages, key=world.rank // stages)
        return cls(world=world, stages=stages, pipe=pipe, data=data)
