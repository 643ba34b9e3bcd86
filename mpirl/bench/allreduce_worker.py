"""Under ``mpirun -n N``: time FlatGradients.average() against a raw Allreduce of the same bytes.

Prints one JSON line (rank 0): median microseconds per call of each, and their ratio. The model
is the trainer's default actor-critic for CartPole-v1, so the buffer is the real gradient size.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from mpi4py import MPI

from mpirl.comm import World
from mpirl.comm.collectives import FlatGradients
from mpirl.models.actor_critic import ActorCritic


def _timed(fn, comm) -> float:
    comm.Barrier()  # each call starts with all ranks ready, as in training
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _median_us_interleaved(fns, iters: int, comm) -> list[float]:
    """Median microseconds per call of each of ``fns``, called in turn (A, B, A, B, ...) after a
    warm-up, so that both see the same state of a shared machine and neither gets the cold start."""
    for _ in range(max(10, iters // 10)):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(iters):
        for fn, spent in zip(fns, times):
            spent.append(_timed(fn, comm))
    return [1e6 * statistics.median(spent) for spent in times]


def main(iters: int) -> None:
    torch.set_num_threads(1)
    world = World()
    model = ActorCritic(4, gym.spaces.Discrete(2), (64, 64))
    grads = FlatGradients(model.parameters(), world)
    raw = np.random.default_rng(world.rank).normal(size=grads.numel).astype(np.float32)
    average, allreduce = _median_us_interleaved(
        [grads.average, lambda: world.comm.Allreduce(MPI.IN_PLACE, raw, op=MPI.SUM)], iters,
        world.comm)
    if world.is_root:
        print(json.dumps({"ranks": world.size, "numel": grads.numel, "iters": iters,
                          "average_us": average, "raw_us": allreduce,
                          "ratio": average / allreduce}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
