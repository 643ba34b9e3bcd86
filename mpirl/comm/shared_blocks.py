"""Blocks whose full-length vectors the ranks of a node share, instead of each holding a copy.

With :class:`~mpirl.comm.blocks.Blocks` every rank keeps its own copy of each full vector (V in
value iteration) and every sweep ends with an Allgatherv that copies each block to each rank.
Ranks on one node need not copy at all: :class:`SharedBlocks` allocates the vectors in one MPI-3
shared-memory window per node (``MPI.Win.Allocate_shared``), each rank writes its own block in
place, and a barrier makes the writes visible to the rest of the node. Between nodes the node
leaders (node rank 0) exchange their nodes' ranges with one in-place Allgatherv.

On one node that turns the per-sweep exchange into a barrier, and it also leaves one copy of V
in the cache the cores share instead of one per rank: the backup reads V at random, so private
copies crowd each other out of the L3. (Figures: the README's MDP benchmark, which times both.)

The node's blocks must form one contiguous range, i.e. its ranks must be consecutive world ranks
(mpirun's and srun's default block mapping). Otherwise every rank falls back to private vectors
and Allgatherv, and rank 0 warns once: :attr:`SharedBlocks.shared` tells which is in use. The
same happens when /dev/shm, where MPI keeps the window on Linux, has no room for the vectors (a
container's default 64 MB, say): touching a window beyond it would kill the ranks with SIGBUS.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

import numpy as np
from mpi4py import MPI

from mpirl.comm.blocks import Blocks
from mpirl.comm.world import World

_ITEM = np.dtype(np.float64).itemsize


def shm_room() -> float:
    """Free bytes in /dev/shm, where Open MPI and MPICH keep shared windows on Linux (infinite
    where there is no /dev/shm: the MPI library then knows its own place)."""
    try:
        fs = os.statvfs("/dev/shm")
    except OSError:
        return float("inf")
    return float(fs.f_bavail * fs.f_frsize)


class SharedBlocks(Blocks):
    """A :class:`Blocks` split whose :meth:`vectors` live in node-shared memory.

    ``node_of`` maps a world rank to a node id in place of asking MPI which ranks share memory:
    the tests use it to run several "nodes" on one machine.
    Call :meth:`free` (collective) when done; the vectors are invalid afterwards.
    """

    def __init__(self, world: World, n: int, node_of: Callable[[int], int] | None = None):
        super().__init__(world, n)
        comm = world.comm
        self.node = (comm.Split_type(MPI.COMM_TYPE_SHARED, key=world.rank) if node_of is None
                     else comm.Split(node_of(world.rank), key=world.rank))
        members = self.node.allgather(world.rank)
        consecutive = members == list(range(members[0], members[0] + len(members)))
        # One rank per node has nothing to share: private vectors (and huge pages, which the
        # shared window's memory does not get) are a little faster then.
        self.shared = world.all_ranks(consecutive) and world.any_rank(self.node.size > 1)
        self.n_nodes = sum(world.allgather_obj(self.node.rank == 0))
        self.leaders = MPI.COMM_NULL
        self._windows: list[MPI.Win] = []
        self._window_at: dict[int, MPI.Win] = {}  # a shared vector's address -> its window
        if not self.shared:
            if not world.all_ranks(consecutive):
                self._warn("the ranks of a node are not consecutive (round-robin mapping); map "
                           "ranks by slot or core (mpirun's and srun's default) to share it")
            return
        # The node leaders, and each node's range [first item, last item) for their Allgatherv.
        is_leader = self.node.rank == 0
        self.leaders = comm.Split(0 if is_leader else MPI.UNDEFINED, key=world.rank)
        if is_leader:
            first, last = members[0], members[-1]
            span = (int(self.displs[first]), int(self.displs[last] + self.counts[last]))
            spans = np.array(self.leaders.allgather(span), dtype=np.int64)
            self._node_displs, self._node_counts = spans[:, 0], spans[:, 1] - spans[:, 0]

    def _allocate(self, count: int) -> list[np.ndarray]:
        """``count`` full-length float64 vectors in one new shared window of the node."""
        if not self.shared:
            return super()._allocate(count)
        nbytes = count * self.n * _ITEM
        room = self.node.bcast(shm_room() if self.node.rank == 0 else None)
        if not self.world.all_ranks(room >= nbytes):
            self.shared = False
            self._warn(f"/dev/shm has no room for {nbytes / 2**20:.0f} MiB on some node (give "
                       "a container more with --shm-size)")
            return super()._allocate(count)
        window = MPI.Win.Allocate_shared(nbytes if self.node.rank == 0 else 0, _ITEM,
                                         comm=self.node)
        window.Lock_all(MPI.MODE_NOCHECK)  # a passive epoch for the whole run: Sync orders memory
        self._windows.append(window)
        buffer, _ = window.Shared_query(0)
        vectors = list(np.ndarray((count, self.n), np.float64, buffer=buffer))
        for v in vectors:
            self._window_at[v.ctypes.data] = window
        return vectors

    def _wait_for_readers(self) -> None:
        """Shared vectors are about to be zeroed for reuse: a node mate may still be reading
        the last solve's V (its greedy policy, its copy of V), so wait for all of them."""
        if self._windows:
            self.node.Barrier()

    def allgather_inplace(self, full: np.ndarray) -> None:
        """After every rank has written its block of ``full``, every rank sees every block.

        For a shared vector: a barrier within the node and, across nodes, the leaders' in-place
        Allgatherv of the node ranges, then another barrier. Anything else: the Allgatherv."""
        window = self._window_at.get(full.ctypes.data) if full.shape == (self.n,) else None
        if window is None:
            return super().allgather_inplace(full)
        self._node_sync(window)
        if self.n_nodes > 1:
            if self.leaders != MPI.COMM_NULL:
                self.leaders.Allgatherv(MPI.IN_PLACE,
                                        [full, (self._node_counts, self._node_displs), MPI.DOUBLE])
            self._node_sync(window)

    def free(self) -> None:
        """Release the windows and communicators (collective); the vectors die with them."""
        super().free()
        if self._windows:
            self.node.Barrier()  # nobody unmaps the memory while a node mate still reads it
        for window in self._windows:
            window.Unlock_all()
            window.Free()
        self._windows.clear()
        self._window_at.clear()
        for comm in (self.leaders, self.node):
            if comm != MPI.COMM_NULL:
                comm.Free()
        self.leaders = self.node = MPI.COMM_NULL

    def _warn(self, why: str) -> None:
        if self.world.is_root:   # once, not once per rank
            print(f"mpirl: V is copied to every rank with Allgatherv, not shared within nodes: "
                  f"{why}", file=sys.stderr, flush=True)

    def _node_sync(self, window: MPI.Win) -> None:
        """Make this rank's stores to ``window`` visible to its node, and theirs to it."""
        window.Sync()
        self.node.Barrier()
        window.Sync()
