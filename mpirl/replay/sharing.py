"""One replay memory across ranks: the three ``--replay-sharing`` modes.

Every mode offers the same three calls, made by every rank in lockstep:

    add(records)                  this rank's new transitions (possibly none)
    sample(batch_size, beta)      -> Batch: this rank's ``batch_size`` records + importance weights
    update_priorities(batch, p)   new raw priorities (|TD error|) of that batch's records

A training step draws one *global* batch of ``size * batch_size`` transitions; rank k learns from
its slice ``[k * batch_size, (k + 1) * batch_size)`` and the gradients are averaged, so the ranks
act as one learner with a batch ``size`` times larger.

- ``allgather``: new transitions of all ranks go to every rank (one Allgatherv of records), so all
  memories hold the same data in rank order. A shared-seed generator draws the same global batch
  on every rank, each rank takes its slice, and the new priorities of the whole global batch are
  gathered (one Allgather) and applied everywhere: the memories stay identical, priorities too.
- ``sharded``: each rank keeps its own transitions (one shard of the global memory). The shards'
  priority totals are gathered (Allgather); a shared-seed multinomial splits the global batch
  into per-shard counts in proportion to those totals; each shard draws its count and the records
  travel to the learners that own those batch positions (Alltoallv); the new priorities travel
  back to the owning shard the same way. Sampling probabilities are those of one global memory.
- ``none``: separate memories; each rank samples its own batch (for comparison).

Importance weights use the global memory size and sampling probabilities and are normalised by
the maximum over the global batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpirl.comm.collectives import allreduce_max
from mpirl.comm.exchange import allgather_fixed, allgatherv, alltoallv
from mpirl.comm.world import World
from mpirl.replay.buffer import ReplayBuffer, importance_weights

MODES = ("allgather", "sharded", "none")


@dataclass
class Batch:
    """This rank's part of a global batch.

    records: (B,) transition records; weights: (B,) float32 importance weights (ones when
    uniform); route: where each record came from, for :meth:`update_priorities`.
    """

    records: np.ndarray
    weights: np.ndarray
    route: tuple


class SharedReplay:
    """Base: a rank's memory plus two generators, one shared by all ranks and one its own.

    ``shared_rng`` must see the same calls on every rank (all ranks call in lockstep), which is
    what lets them draw the same batch or the same split without a message.
    """

    mode = ""

    def __init__(self, world: World, memory: ReplayBuffer, seed: int):
        self.world, self.memory = world, memory
        self.shared_rng = np.random.default_rng([seed, 0x5eed])
        self.local_rng = np.random.default_rng(world.rank_seed(seed, stream=0x5eed))

    def global_size(self) -> int:
        """Transitions in the global memory (what importance weights count as N)."""
        return self.memory.size

    def add(self, records: np.ndarray) -> None:
        self.memory.add(records)

    def generator_states(self) -> dict:
        """The two generators' states (a resumed run draws the batches it would have drawn)."""
        return {"shared_rng": self.shared_rng.bit_generator.state,
                "local_rng": self.local_rng.bit_generator.state}

    def load_generator_states(self, states: dict) -> None:
        self.shared_rng.bit_generator.state = states["shared_rng"]
        self.local_rng.bit_generator.state = states["local_rng"]

    def _weights(self, probs: np.ndarray, beta: float, max_weight: float | None = None):
        if not self.memory.prioritized:
            return np.ones(probs.shape[0], dtype=np.float32)
        return importance_weights(probs, self.global_size(), beta, max_weight)


class AllgatherReplay(SharedReplay):
    mode = "allgather"

    def add(self, records: np.ndarray) -> None:
        everyone, _ = allgatherv(self.world, records)     # rank order on every rank
        self.memory.add(everyone)

    def sample(self, batch_size: int, beta: float) -> Batch:
        # the same global batch on every rank (identical memory, identical generator)
        slots, probs = self.memory.sample_indices(batch_size * self.world.size, self.shared_rng)
        weights = self._weights(probs, beta)              # normalised over the global batch
        mine = slice(self.world.rank * batch_size, (self.world.rank + 1) * batch_size)
        return Batch(self.memory.transitions(slots[mine]), weights[mine], (slots,))

    def update_priorities(self, batch: Batch, priorities: np.ndarray) -> None:
        if not self.memory.prioritized:
            return
        (slots,) = batch.route
        every = allgather_fixed(self.world, np.asarray(priorities, dtype=np.float64))
        self.memory.update_priorities(slots, every.reshape(-1))


class ShardedReplay(SharedReplay):
    mode = "sharded"

    def __init__(self, world: World, memory: ReplayBuffer, seed: int):
        super().__init__(world, memory, seed)
        self._sizes = np.zeros(world.size, dtype=np.int64)

    def global_size(self) -> int:
        return int(self._sizes.sum())  # as of the latest sample()

    def sample(self, batch_size: int, beta: float) -> Batch:
        n, rank = self.world.size, self.world.rank
        mass_and_size = allgather_fixed(self.world, np.array([self.memory.total, self.memory.size],
                                                             dtype=np.float64))
        masses, self._sizes = mass_and_size[:, 0], mass_and_size[:, 1].astype(np.int64)
        if masses.sum() <= 0:  # on every rank alike: they all see the same totals
            raise ValueError("cannot sample from an empty replay memory")
        counts = self.shared_rng.multinomial(batch_size * n, masses / masses.sum())
        routes = _routes(counts, batch_size)              # routes[r, k]: shard r -> learner k

        slots, probs = (self.memory.sample_indices(counts[rank], self.local_rng) if counts[rank]
                        else (np.zeros(0, np.int64), np.zeros(0)))
        probs = probs * (masses[rank] / masses.sum())     # P(i) in the global memory
        records = alltoallv(self.world, self.memory.transitions(slots), routes[rank],
                           routes[:, rank])
        probs = alltoallv(self.world, probs, routes[rank], routes[:, rank])

        max_weight = None
        if self.memory.prioritized:
            raw = importance_weights(probs, self.global_size(), beta, max_weight=1.0)
            max_weight = float(allreduce_max(self.world, [raw.max()])[0])
        return Batch(records, self._weights(probs, beta, max_weight), (slots, routes))

    def update_priorities(self, batch: Batch, priorities: np.ndarray) -> None:
        if not self.memory.prioritized:
            return
        slots, routes = batch.route
        rank = self.world.rank
        # the reverse journey: back to each shard, arriving in the order it sent them
        mine = alltoallv(self.world, np.asarray(priorities, dtype=np.float64),
                         routes[:, rank], routes[rank])
        self.memory.update_priorities(slots, mine)


class LocalReplay(SharedReplay):
    mode = "none"

    def sample(self, batch_size: int, beta: float) -> Batch:
        slots, probs = self.memory.sample_indices(batch_size, self.local_rng)
        return Batch(self.memory.transitions(slots), self._weights(probs, beta), (slots,))

    def update_priorities(self, batch: Batch, priorities: np.ndarray) -> None:
        self.memory.update_priorities(batch.route[0], priorities)


def _routes(counts: np.ndarray, batch_size: int) -> np.ndarray:
    """How many of shard r's draws go to learner k: int64 (shards, learners).

    The global batch lists shard 0's draws, then shard 1's, ...; learner k owns positions
    [k * batch_size, (k + 1) * batch_size). Entry (r, k) is the overlap of the two ranges.
    """
    ends = np.cumsum(counts)
    starts = ends - counts
    lo = np.arange(counts.size) * batch_size
    hi = lo + batch_size
    overlap = np.minimum(ends[:, None], hi[None, :]) - np.maximum(starts[:, None], lo[None, :])
    return np.maximum(overlap, 0).astype(np.int64)


def make_shared_replay(mode: str, world: World, memory: ReplayBuffer, seed: int) -> SharedReplay:
    """The sharing strategy ``mode`` (one of MODES) over this rank's ``memory``."""
    kinds = {"allgather": AllgatherReplay, "sharded": ShardedReplay, "none": LocalReplay}
    if mode not in kinds:
        raise ValueError(f"unknown replay sharing mode {mode!r}; choose from {', '.join(MODES)}")
    return kinds[mode](world, memory, seed)
