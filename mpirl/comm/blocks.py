"""An index range split into contiguous blocks, one per rank, and the in-place Allgatherv that
puts the blocks back together every sweep (the state slices of distributed value iteration).

numpy and mpi4py only (no torch), so the tabular MDP tools start quickly.

For a one-off gather of blocks whose sizes are not known in advance, see
``mpirl.comm.exchange.allgatherv``."""
from __future__ import annotations

import numpy as np
from mpi4py import MPI
from mpi4py.util.dtlib import from_numpy_dtype

from mpirl.comm.world import World


class Blocks:
    """``n`` items split over the ranks of ``world`` as evenly as possible, in rank order.

    Rank r owns items ``[displs[r], displs[r] + counts[r])``; ``lo``/``hi`` are this rank's.
    The first ``n % size`` ranks hold one item more than the others.
    """

    shared = False  # whether the full vectors are shared within nodes (see SharedBlocks)

    def __init__(self, world: World, n: int):
        if n < world.size:
            raise ValueError(f"cannot split {n} items over {world.size} ranks: every rank needs one")
        self.world, self.n = world, n
        base, extra = divmod(n, world.size)
        self.counts = np.array([base + (r < extra) for r in range(world.size)], dtype=np.int64)
        self.displs = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.lo = int(self.displs[world.rank])
        self.hi = self.lo + int(self.counts[world.rank])
        self._scalar = np.zeros(1)
        self._vectors: dict[int, list[np.ndarray]] = {}   # see vectors()

    def _spec(self, buf: np.ndarray) -> list:
        width = int(np.prod(buf.shape[1:], dtype=np.int64))  # items may be rows, e.g. Q (n, A)
        return [buf, (self.counts * width, self.displs * width), from_numpy_dtype(buf.dtype)]

    def vectors(self, count: int) -> list[np.ndarray]:
        """``count`` full-length float64 vectors, zero, for :meth:`allgather_inplace` (collective).

        The same arrays come back, zeroed again, on every call with the same ``count``, so that
        repeated solves on one split touch their memory once (a first touch costs a page fault
        per page): one user of them at a time. Here each rank's own;
        :class:`~mpirl.comm.shared_blocks.SharedBlocks` shares them within a node."""
        if count not in self._vectors:
            self._vectors[count] = self._allocate(count)
        else:
            self._wait_for_readers()
        for v in self._vectors[count]:   # each rank first touches its own block
            v[self.lo:self.hi] = 0.0
            self.allgather_inplace(v)
        return self._vectors[count]

    def _allocate(self, count: int) -> list[np.ndarray]:
        return list(np.empty((count, self.n)))

    def _wait_for_readers(self) -> None:
        """Before vectors are zeroed for reuse: private ones have no other reader."""

    def free(self) -> None:
        """Release what the split holds: its vectors (and, in the subclass, its windows)."""
        self._vectors.clear()

    def allgather_inplace(self, full: np.ndarray) -> None:
        """Every rank has written its own block of ``full`` (shape (n, ...), C-contiguous);
        afterwards every rank holds every block. One in-place Allgatherv, no copies."""
        if self.world.size > 1:
            self.world.comm.Allgatherv(MPI.IN_PLACE, self._spec(full))

    def max_over_ranks(self, value: float) -> float:
        """The largest ``value`` of all ranks (the per-sweep residual): one Allreduce(MAX) of a
        preallocated float64. A NaN counts as +inf: MPI's MAX may drop a NaN, and a rank's NaN
        residual must keep every rank from calling the solve converged."""
        if self.world.size == 1:
            return float(value)
        self._scalar[0] = np.inf if value != value else value
        self.world.comm.Allreduce(MPI.IN_PLACE, self._scalar, op=MPI.MAX)
        return float(self._scalar[0])
