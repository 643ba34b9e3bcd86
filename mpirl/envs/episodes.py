"""Episode returns and lengths: kept per rank while acting, pooled over ranks once an update."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mpirl.comm.collectives import allreduce_sum
from mpirl.comm.world import World


@dataclass
class EpisodeStats:
    """Returns and lengths of the episodes finished since the last :meth:`drain`."""

    num_envs: int
    running_return: np.ndarray = field(init=False)
    running_length: np.ndarray = field(init=False)
    returns: list = field(default_factory=list)
    lengths: list = field(default_factory=list)

    def __post_init__(self):
        self.running_return = np.zeros(self.num_envs, np.float64)
        self.running_length = np.zeros(self.num_envs, np.int64)

    def record(self, reward: np.ndarray, done: np.ndarray, valid: np.ndarray) -> None:
        self.running_return += reward * valid
        self.running_length += valid
        if done.any():
            self.returns.extend(self.running_return[done].tolist())
            self.lengths.extend(self.running_length[done].tolist())
            self.running_return[done] = 0.0
            self.running_length[done] = 0

    def drain(self) -> tuple[list, list]:
        out = self.returns, self.lengths
        self.returns, self.lengths = [], []
        return out


def episode_sums(returns: list, lengths: list) -> np.ndarray:
    """(episodes, sum of returns, sum of squared returns, sum of lengths): what pools by adding."""
    r = np.asarray(returns, np.float64)
    return np.array([len(r), r.sum(), np.square(r).sum(), float(sum(lengths))])


def stats_from_sums(sums) -> dict:
    """The episode statistics of :func:`episode_sums` (pooled: summed over ranks or blocks)."""
    n, s, ss, ls = (float(x) for x in sums)
    if n == 0:
        return {"episodes": 0}
    mean = s / n
    return {"episodes": int(n), "episode_return_mean": float(mean),
            "episode_return_std": float(np.sqrt(max(ss / n - mean * mean, 0.0))),
            "episode_length_mean": float(ls / n)}


def allreduce_episode_stats(world: World, returns: list, lengths: list) -> dict:
    """Episode statistics pooled over all ranks (one Allreduce)."""
    return stats_from_sums(allreduce_sum(world, episode_sums(returns, lengths)))
