"""The arithmetic of task-weighted gradient averaging in multi-task runs: pure functions, no MPI
(the averaging itself: :mod:`mpirl.tasks.sync`), still ONE flat Allreduce.

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

Parked tasks (--park-solved-tasks: a task whose evaluation reached its target stops training).
A parked task's ranks still enter every Allreduce, so the collectives match on all ranks, but
with a zero gradient; the weights are renormalised over the A tasks still training (``N_A``
ranks): trunk ``N / (A * n_k)`` (equal) or ``N / N_A`` (ranks), heads as before, so the trunk
gets ``(1/A) sum_{k training} mean_{r in k} g_r`` (or the mean over the training ranks) and a
parked task's head gets 0. While any task is parked every rank averages with a non-blocking
Iallreduce instead (MPI does not match a blocking collective with a non-blocking one, so all
ranks switch together: the parked state is decided from evaluation results every rank holds).
Training ranks Wait() on it; parked ranks, which arrive long before the others (they collect
nothing), wait in :func:`~mpirl.comm.collectives.wait_idle`: Test(), then sleep, so they leave the cores to the ranks
that train instead of polling in MPI's progress loop.

Mixed batches (DQN with a replay memory shared across tasks). There a rank's batch holds
transitions of several tasks, so the weighting moves into the loss: of the global batch of
``T = N * B`` transitions, ``m_k`` are task k's (counted with one tiny Allreduce), and each
transition of task k enters its rank's loss with the weight ``w_k`` (:func:`task_weights`):

    equal:  w_k = T / (K' * m_k)        (K': the tasks present in the batch)
    ranks:  w_k = 1                     (T / sum m = 1: every transition counts the same)

so that after the Allreduce the trunk gets ``(1/K') sum_k mean_{i in k} g_i`` (equal) or the mean
over the whole batch (ranks). Head k, reached only by its task's transitions, is scaled by
``h_k / w_k`` with ``h_k = T / m_k``: it gets ``mean_{i in k} g_i``, its own task's mean, as in a
single-task run. (PPO is the same arithmetic with ranks for transitions: rank r's whole loss is
task k(r)'s, ``m_k = n_k``, ``T = N``, and its scale is ``w_k`` on the trunk, ``h_k`` on its head.)
"""
from __future__ import annotations

import numpy as np
import torch

WEIGHTINGS = ("equal", "ranks")


def task_weights(counts, total: float, weighting: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-task weights of a batch of ``total`` slots, ``counts[k]`` of them task k's (the rest,
    if any, contribute nothing: parked ranks). Returns (w, h), float64 (K,) each:

    w[k]  the factor of task k's slots in the loss and the trunk's gradient: ``total / (K' m_k)``
          (equal; K' = tasks with m_k > 0) or ``total / sum m`` (ranks)
    h[k]  the factor of task k's head: ``total / m_k``, its mean over its task's slots
    Both are 0 for a task without slots.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    safe = np.where(present, counts, 1.0)
    heads = np.where(present, total / safe, 0.0)
    if weighting == "equal":
        trunk = np.where(present, total / (max(int(present.sum()), 1) * safe), 0.0)
    else:
        trunk = np.where(present, total / max(counts.sum(), 1.0), 0.0)
    return trunk, heads


def segment_scale(owners: list[int | None], sizes: list[int], trunk: float,
                  heads) -> torch.Tensor:
    """The per-element scale (sum(sizes),): ``trunk`` on shared parameters (owner None),
    ``heads[k]`` on task k's head."""
    parts = [torch.full((size,), float(trunk if owner is None else heads[owner]))
             for owner, size in zip(owners, sizes)]
    return torch.cat(parts) if parts else torch.zeros(0)


def task_gradient_scale(owners: list[int | None], sizes: list[int], task: int,
                        rank_counts: list[int], weighting: str,
                        parked: list[bool] | None = None) -> torch.Tensor:
    """The per-element scale (sum(sizes),) for a rank of ``task`` whose whole gradient is its
    task's (PPO).

    owners[i]: the task whose head parameter i belongs to, None for shared (trunk) parameters;
    sizes[i]: its number of elements; rank_counts[k]: how many ranks train task k; parked[k]:
    task k trains no more (its ranks' scale is all 0, the others' renormalised over the rest).
    """
    parked = list(parked) if parked is not None else [False] * len(rank_counts)
    if len(parked) != len(rank_counts):
        raise ValueError(f"parked has {len(parked)} flags for {len(rank_counts)} tasks")
    training = [0 if p else n for n, p in zip(rank_counts, parked)]
    trunk, heads = task_weights(training, sum(rank_counts), weighting)
    mine = [heads[task] if k == task else 0.0 for k in range(len(rank_counts))]
    return segment_scale(owners, sizes, trunk[task], mine)
