"""Evaluation: deterministic episodes split over the ranks, their mean return agreed by all."""
from __future__ import annotations

import numpy as np

from mpirl.comm.collectives import allreduce_sum
from mpirl.comm.world import World
from mpirl.envs.make import clip_to_space, make_vec
from mpirl.envs.normalize import ObsNormalizer


class Evaluator:
    """Runs ``episodes`` evaluation episodes split over the ranks, with a deterministic policy.

    Each rank keeps its own vector env (one sub-env per episode it runs), re-seeded identically
    for every evaluation so evaluations are comparable across updates. The ranks' episodes are
    consecutive slices of ``episodes`` global ones, and a rank's env is reset with ``seed`` plus
    the global index of its first episode, so no two ranks run the same episodes: sync/async
    envs seed sub-env ``i`` with ``seed + offset + i`` (episode ``k`` always gets ``seed + k``,
    whatever the rank count), and native vector envs (one RNG for all sub-envs, e.g. CartPole's)
    draw every rank's start states from a different seed.
    """

    def __init__(self, world: World, env_id: str, episodes: int, seed: int, mode: str = "auto"):
        self.world = world
        base, extra = divmod(episodes, world.size)
        self.local = base + (1 if world.rank < extra else 0)
        self.offset = world.rank * base + min(world.rank, extra)  # global index of 1st episode
        self.seed = seed + self.offset
        self.envs = make_vec(env_id, self.local, mode) if self.local else None

    def run_across_ranks(self, act, normalizer: ObsNormalizer | None = None) -> float:
        """Mean return over all ranks' episodes (collective). ``act(obs) -> actions`` is
        deterministic."""
        returns = np.zeros(self.local, np.float64)
        if self.local:
            obs, _ = self.envs.reset(seed=self.seed)
            running = np.ones(self.local, bool)
            while running.any():
                o = normalizer(obs, accumulate=False) if normalizer else obs.astype(np.float32)
                actions = clip_to_space(act(o), self.envs.single_action_space)
                obs, reward, term, trunc, _ = self.envs.step(actions)
                returns += reward * running
                running &= ~(term | trunc)
        n, total = allreduce_sum(self.world, [self.local, returns.sum()])
        return float(total / max(n, 1.0))

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()
