"""Task-weighted gradient averaging (the weights: :mod:`mpirl.tasks.weights`), through the
gradient sync of :mod:`mpirl.comm.sync`, and the parked tasks' frozen heads."""
from __future__ import annotations

import numpy as np
import torch

from mpirl.comm.collectives import FlatGradients
from mpirl.tasks.weights import segment_scale, task_gradient_scale, task_weights


class TaskWeightedSync:
    """Wraps a sync strategy whose ``gradients_ready`` averages the flat gradient over all ranks:
    scales this rank's segments first (see the module docstring), then lets it average.

    :meth:`set_parked` changes which tasks train; it must be called with the same flags on
    every rank at the same point (MultiTask does, from evaluation results). It also tells
    ``optimizer`` (a :class:`~mpirl.optim.FlatAdam`, when given) to hold the parked tasks'
    heads still: a zero gradient alone would leave them drifting on Adam's momentum.
    """

    def __init__(self, inner, grads: FlatGradients, owner: dict[int, int | None], task: int,
                 rank_counts: list[int], weighting: str, optimizer=None):
        self.inner = inner
        self.grads, self.optimizer = grads, optimizer
        self.task, self.rank_counts, self.weighting = task, list(rank_counts), weighting
        self._owners = [owner[id(p)] for p in grads.params]
        self._sizes = [p.numel() for p in grads.params]
        self.set_parked([False] * len(rank_counts))

    def set_parked(self, parked: list[bool]) -> None:
        self.parked = [bool(p) for p in parked]
        self.any_parked = any(self.parked)
        self.idle = self.parked[self.task]
        self.scale = task_gradient_scale(self._owners, self._sizes, self.task, self.rank_counts,
                                         self.weighting, self.parked).to(self.grads.flat.dtype)
        if self.optimizer is not None:
            self.optimizer.frozen = torch.cat([
                torch.full((size,), owner is not None and self.parked[owner])
                for owner, size in zip(self._owners, self._sizes)]) if self.any_parked else None

    def weigh_batch(self, counts) -> np.ndarray:
        """A batch that mixes tasks (DQN): ``counts[k]`` of the global batch's transitions are
        task k's, the same on every rank. Returns each task's loss weight ``w`` (K,) and scales
        the heads by ``h / w`` for the next :meth:`gradients_ready` (see the module docstring).
        """
        trunk, heads = task_weights(counts, float(np.sum(counts)), self.weighting)
        factors = np.divide(heads, trunk, out=np.zeros_like(heads), where=trunk > 0)
        self.scale = segment_scale(self._owners, self._sizes, 1.0, factors).to(
            self.grads.flat.dtype)
        return trunk

    @property
    def replicas_identical(self) -> bool:
        return self.inner.replicas_identical

    def gradients_ready(self) -> None:
        if not self.any_parked:
            self.grads.flat.mul_(self.scale)
            self.inner.gradients_ready()
            return
        if self.idle:
            self.grads.zero()  # whatever the buffer holds: a parked rank adds exactly nothing
        else:
            self.grads.flat.mul_(self.scale)
        # The inner strategy's averaging, as an Iallreduce.
        self.grads.average_nonblocking(idle=self.idle)

    def end_update(self, update: int) -> dict:
        return self.inner.end_update(update)

    def __getattr__(self, name):  # anything else a strategy offers (e.g. average())
        return getattr(self.inner, name)
