"""Task-weighted gradient averaging for multi-task runs, still with ONE flat Allreduce.

Rank r trains task k(r); ``n_k`` ranks train task k, N ranks in all, K tasks. What we want after
averaging:

    trunk   equal:  (1/K) * sum_k mean_{r in k} g_r     (each task counts the same)
            ranks:  (1/N) * sum_r g_r                   (each rank counts the same)
    head j  mean_{r in j} g_r                           (the ranks that train task j)

The Allreduce computes ``(1/N) * sum_r x_r``. So before it, each rank scales its own gradient
segments, ``x_r = s_r * g_r``, with

    trunk   equal: s = N / (K * n_k)     ranks: s = 1
    head j  s = N / n_k if j == k(r) else 0

and the sum comes out as the weighted means above. The scale is one precomputed vector the
size of the flat buffer: one multiply, then the usual single Allreduce.
"""
from __future__ import annotations

import torch

from mpirl.dist.collectives import FlatGradients

WEIGHTINGS = ("equal", "ranks")


def task_gradient_scale(owners: list[int | None], sizes: list[int], task: int,
                        rank_counts: list[int], weighting: str) -> torch.Tensor:
    """The per-element scale (sum(sizes),) for a rank of ``task``.

    owners[i]: the task whose head parameter i belongs to, None for shared (trunk) parameters;
    sizes[i]: its number of elements; rank_counts[k]: how many ranks train task k.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")
    n_ranks, n_tasks, mine = sum(rank_counts), len(rank_counts), rank_counts[task]
    trunk = n_ranks / (n_tasks * mine) if weighting == "equal" else 1.0
    head = n_ranks / mine
    parts = [torch.full((size,), trunk if owner is None else (head if owner == task else 0.0))
             for owner, size in zip(owners, sizes)]
    return torch.cat(parts) if parts else torch.zeros(0)


class TaskWeightedSync:
    """Wraps a sync strategy whose ``gradients_ready`` averages the flat gradient over all ranks:
    scales this rank's segments first (see the module docstring), then lets it average."""

    def __init__(self, inner, grads: FlatGradients, owner: dict[int, int | None], task: int,
                 rank_counts: list[int], weighting: str):
        self.inner = inner
        self.grads = grads
        self.scale = task_gradient_scale([owner[id(p)] for p in grads.params],
                                         [p.numel() for p in grads.params],
                                         task, rank_counts, weighting).to(grads.flat.dtype)

    @property
    def replicas_identical(self) -> bool:
        return self.inner.replicas_identical

    def gradients_ready(self) -> None:
        self.grads.flat.mul_(self.scale)
        self.inner.gradients_ready()

    def end_update(self, update: int) -> dict:
        return self.inner.end_update(update)

    def __getattr__(self, name):  # anything else a strategy offers (e.g. average())
        return getattr(self.inner, name)
