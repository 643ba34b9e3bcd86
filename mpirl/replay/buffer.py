"""Replay memory: a ring of fixed-dtype transition records, sampled uniformly or by priority.

A transition is one numpy *record* (a structured dtype, see :func:`transition_dtype`):

    obs       (*obs_shape,)  observation the action was taken in
    action    ()             int64 action (Discrete spaces); (A,) float32 (Box spaces: SAC, TD3)
    reward    ()             float32 n-step return r_t + g r_{t+1} + ... + g^(k-1) r_{t+k-1}
    next_obs  (*obs_shape,)  observation k steps later, to bootstrap from
    done      ()             bool, the episode terminated within those k steps (no bootstrap)
    discount  ()             float32 g^k, the bootstrap discount (k < n: the episode ended)
    task      ()             int64 the task the transition belongs to (multi-task runs only)

Records of one fixed dtype are what the cross-rank sharing ships around: an array of them is one
contiguous buffer for Allgatherv / Alltoallv, with no pickling.

Prioritized replay is proportional (Schaul et al., 2016): transition i is drawn with probability
P(i) = p_i^alpha / sum_k p_k^alpha, new transitions get the largest priority seen so far, and the
importance weights w_i = (N P(i))^-beta are normalised by the batch's maximum, so they only ever
scale losses down.
"""
from __future__ import annotations

import numpy as np

from mpirl.replay.sumtree import SumTree

# Added to |TD error| so that no transition's priority, and chance of being replayed, reaches 0.
PRIORITY_EPS = 1e-6


def transition_dtype(obs_shape: tuple, obs_dtype=np.float32, task: bool = False,
                     action_shape: tuple = ()) -> np.dtype:
    """The record dtype of one transition with observations of ``obs_shape`` / ``obs_dtype``
    (``task``: with the task id field of multi-task runs; ``action_shape``: a Box space's, whose
    actions are float32 vectors, else one int64 action)."""
    obs_shape, action_shape = tuple(obs_shape), tuple(action_shape)
    action = ("action", np.float32, action_shape) if action_shape else ("action", np.int64)
    # aligned (padded like a C struct): fields sit at multiples of their size, so a column of
    # records can be handed to torch, and copies move whole words
    return np.dtype([("obs", obs_dtype, obs_shape), action, ("reward", np.float32),
                     ("next_obs", obs_dtype, obs_shape), ("done", np.bool_),
                     ("discount", np.float32)] + ([("task", np.int64)] if task else []),
                    align=True)


def importance_weights(probs: np.ndarray, size: int, beta: float,
                       max_weight: float | None = None) -> np.ndarray:
    """w_i = (size * probs_i)^-beta / max_weight, float32, shape of ``probs``.

    ``max_weight`` defaults to the largest weight in ``probs`` (the batch's maximum); pass the
    maximum over a batch spread across ranks to normalise all parts alike.
    """
    weights = np.power(size * np.asarray(probs, dtype=np.float64), -beta)
    top = weights.max() if max_weight is None else max_weight
    return (weights / top).astype(np.float32)


def anneal_beta(beta0: float, progress: float) -> float:
    """Importance exponent beta, linear from ``beta0`` at progress 0 to 1 at progress >= 1."""
    return beta0 + (1.0 - beta0) * min(max(progress, 0.0), 1.0)


class ReplayBuffer:
    """A ring of ``capacity`` records of ``dtype``; the oldest are overwritten first.

    ``prioritized`` memories keep ``p_i^alpha`` of every slot in a :class:`SumTree`; uniform ones
    draw slots uniformly from the filled part. Either way :meth:`sample_indices` returns each
    drawn slot's probability, so the caller can weight or combine draws from several memories.
    """

    def __init__(self, capacity: int, dtype: np.dtype, prioritized: bool = True,
                 alpha: float = 0.6):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, not {capacity}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"priority exponent alpha must lie in [0, 1], not {alpha}")
        self.capacity = int(capacity)
        self.storage = np.zeros(self.capacity, dtype=dtype)
        self.prioritized = prioritized
        self.alpha = alpha
        self.tree = SumTree(self.capacity) if prioritized else None
        self.max_priority = 1.0    # raw priority (before ^alpha) given to new transitions
        self.next = 0              # slot the next record goes to
        self.size = 0              # filled slots
        self.added = 0             # records ever added

    def __len__(self) -> int:
        return self.size

    @property
    def total(self) -> float:
        """The sampling mass: sum of p^alpha (prioritized) or the number of records (uniform)."""
        return self.tree.total if self.prioritized else float(self.size)

    def add(self, records: np.ndarray) -> np.ndarray:
        """Append ``records`` (shape (B,), this memory's dtype); returns the slots written (B,)."""
        records = np.asarray(records)
        if records.dtype != self.storage.dtype:
            raise TypeError(f"records of dtype {records.dtype} do not fit a memory of "
                            f"{self.storage.dtype}")
        if records.shape[0] > self.capacity:  # only the newest `capacity` survive anyway
            records = records[-self.capacity:]
        slots = (self.next + np.arange(records.shape[0])) % self.capacity
        self.storage[slots] = records
        if self.prioritized:
            self.tree.update(slots, self.max_priority ** self.alpha)
        self.next = int((self.next + records.shape[0]) % self.capacity)
        self.size = min(self.size + records.shape[0], self.capacity)
        self.added += records.shape[0]
        return slots

    def sample_indices(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``count`` slots drawn independently (with replacement), and each one's probability.

        Returns (slots int64 (count,), probs float64 (count,)). Prioritized draws come in
        ascending slot order (sorted draws search the tree faster; a batch's order carries no
        meaning).
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay memory")
        if not self.prioritized:
            slots = rng.integers(0, self.size, size=count)
            return slots, np.full(count, 1.0 / self.size)
        draws = rng.random(count)
        draws.sort()
        slots, probs = self.tree.find_fractions(draws)
        if self.size < self.capacity and slots[-1] >= self.size:  # rounding at the filled end
            np.minimum(slots, self.size - 1, out=slots)
            probs = self.tree[slots] / self.total
        return slots, probs

    def transitions(self, slots: np.ndarray) -> np.ndarray:
        """The records in ``slots`` (a copy)."""
        return self.storage[slots]

    def sample(self, count: int, rng: np.random.Generator, beta: float):
        """A batch: (records (count,), slots (count,), importance weights float32 (count,))."""
        slots, probs = self.sample_indices(count, rng)
        weights = importance_weights(probs, self.size, beta) if self.prioritized \
            else np.ones(count, dtype=np.float32)
        return self.transitions(slots), slots, weights

    def update_priorities(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """Set the raw priorities (e.g. |TD error|) of ``slots``; stored as (p + eps)^alpha.

        A no-op for uniform memories. Where a slot repeats, the last priority wins.
        """
        if not self.prioritized:
            return
        priorities = np.abs(np.asarray(priorities, dtype=np.float64)) + PRIORITY_EPS
        self.max_priority = max(self.max_priority, float(priorities.max(initial=0.0)))
        self.tree.update(slots, priorities ** self.alpha)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything the memory holds, as arrays (mpirl.replay.snapshot writes them to disk)."""
        state = {"storage": self.storage[:self.size],
                 "counters": np.array([self.next, self.size, self.added], np.int64),
                 "max_priority": np.array([self.max_priority])}
        if self.prioritized:
            state["tree"] = self.tree.tree
            # (the tree re-sums its inner nodes every `capacity` writes: a resumed tree must
            # re-sum when the saved one would have, for its sums to go on bit for bit)
            state["tree_writes"] = np.array([self.tree._writes_since_rebuild], np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.next, self.size, self.added = (int(c) for c in state["counters"])
        if state["storage"].dtype != self.storage.dtype or self.size > self.capacity:
            raise ValueError("a replay snapshot of another memory's records or capacity")
        self.storage[:self.size] = state["storage"]
        self.max_priority = float(state["max_priority"][0])
        if self.prioritized:
            self.tree.tree[:] = state["tree"]   # in place: the native kernels hold its address
            self.tree._writes_since_rebuild = int(state["tree_writes"][0])

