"""Observation statistics that are identical on every rank: running mean and variance merged across
ranks from (count, sum, sum of squares), in float64; and the reward scaling built on them.

Nothing here imports MPI at module level: a trained policy normalises its observations with these
classes in a process without MPI (mpirl.trained); only the merging across ranks needs it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpirl.comm.world import World


@dataclass
class RunningMeanStd:
    """Mean and variance of a stream of vectors, mergeable from (count, sum, sum of squares).

    Kept in float64 so sums over millions of samples stay exact enough; merged with Chan et al.'s
    parallel update so the result equals the statistics of all the data seen.
    """

    shape: tuple
    count: float = 0.0
    mean: np.ndarray = None
    var: np.ndarray = None

    def __post_init__(self):
        if self.mean is None:
            self.mean = np.zeros(self.shape, np.float64)
            self.var = np.ones(self.shape, np.float64)

    def merge(self, count: float, total: np.ndarray, total_sq: np.ndarray) -> None:
        """Fold in a batch given by its count, sum and sum of squares."""
        if count <= 0:
            return
        b_mean = total / count
        b_var = np.maximum(total_sq / count - b_mean ** 2, 0.0)
        n = self.count + count
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * count + delta ** 2 * self.count * count / n
        self.mean = self.mean + delta * count / n
        self.var = m2 / n
        self.count = float(n)

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean.tolist(), "var": self.var.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.count = float(state["count"])
        self.mean = np.asarray(state["mean"], np.float64)
        self.var = np.asarray(state["var"], np.float64)


class ObsNormalizer:
    """Normalises observations with statistics that are identical on every rank.

    During a rollout the statistics are frozen and each rank only accumulates its observations'
    (count, sum, sum of squares); :meth:`allreduce_statistics` sums those and merges them, so every rank
    applies the same normalisation and the statistics are those of all ranks' data.
    """

    def __init__(self, shape: tuple, enabled: bool = True, clip: float = 10.0):
        self.enabled = enabled
        self.clip = clip
        self.out_dim = shape[0]  # width of the observations it returns
        self.rms = RunningMeanStd(shape)
        self._pending = np.zeros((2, *shape), np.float64)  # local sum, sum of squares
        self._pending_count = 0
        self._refresh()

    def _refresh(self):
        self._mean = self.rms.mean.astype(np.float32)
        self._inv_std = (1.0 / np.sqrt(self.rms.var + 1e-8)).astype(np.float32)

    def __call__(self, obs: np.ndarray, accumulate: bool = True) -> np.ndarray:
        """Normalised copy of ``obs`` (shape (batch, obs_dim)); records it for the next merge."""
        if not self.enabled:
            return obs.astype(np.float32, copy=False)
        if accumulate:
            obs64 = obs.astype(np.float64)
            self._pending[0] += obs64.sum(0)
            self._pending[1] += np.square(obs64).sum(0)
            self._pending_count += len(obs)
        return np.clip((obs - self._mean) * self._inv_std, -self.clip, self.clip).astype(np.float32)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """``obs`` normalised as for acting, without recording them (evaluation)."""
        return self(obs, accumulate=False)

    def for_replay(self, raw: np.ndarray) -> np.ndarray:
        """What a replay memory keeps of raw observations ``raw`` (B, d): ``raw`` itself (they
        are normalised when replayed, with the statistics of then: :meth:`normalize_replayed`)."""
        return raw

    def normalize_replayed(self, obs: np.ndarray, task: np.ndarray | None = None) -> np.ndarray:
        """Replayed observations (see :meth:`for_replay`) normalised as for acting, without recording
        them. (``task``: the task of each row, for normalisers that know several tasks.)"""
        return self.normalize(obs)

    def allreduce_statistics(self, world: World) -> None:
        """Merge every rank's accumulated observations into the shared statistics."""
        if not self.enabled:
            return
        from mpirl.comm.collectives import allreduce_sum   # (see the module's docstring)
        flat = np.concatenate([[self._pending_count], self._pending.reshape(-1)])
        total = allreduce_sum(world, flat)
        count, sums = total[0], total[1:].reshape(self._pending.shape)
        self.rms.merge(count, sums[0], sums[1])
        self._merged()

    def _merged(self) -> None:
        """The pending sums are in the statistics: start accumulating afresh."""
        self._pending[:] = 0.0
        self._pending_count = 0
        self._refresh()

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def allgather_state_dict(self) -> dict:
        """What a checkpoint holds (the same on every rank here; a multi-task normaliser gathers
        every task's): collective, every rank calls it."""
        return self.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rms.load_state_dict(state)
        self._refresh()


class PixelObs:
    """The normaliser of image observations: none. Pixels pass as the emulator gives them, uint8,
    and the network's first layer scales them (mpirl.models.nature_cnn), so no float copy of a
    rollout or a replay memory is ever made. ``out_dim`` is the image's shape."""

    enabled = False

    def __init__(self, shape: tuple):
        self.out_dim = tuple(shape)

    def __call__(self, obs: np.ndarray, accumulate: bool = True) -> np.ndarray:
        return obs

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        return obs

    def for_replay(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def normalize_replayed(self, obs: np.ndarray, task: np.ndarray | None = None) -> np.ndarray:
        return obs

    def allreduce_statistics(self, world: World) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def allgather_state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class RewardScaler:
    """Rewards divided by the running standard deviation of the discounted return, then clipped
    (the "reward scaling" of Engstrom et al. 2020; gymnasium's NormalizeReward; CleanRL's and
    SB3's continuous-control PPO). Each env keeps its discounted return
    ``R <- gamma * R + r`` (reset where an episode ends); the returns' statistics, like the
    observations', stay frozen during a rollout and are merged over ranks after it
    (:meth:`allreduce_statistics`), so every rank scales alike.

    The running returns are a rank's own state (checkpointed with its env); the statistics are
    shared (checkpointed once).
    """

    def __init__(self, num_envs: int, gamma: float, enabled: bool = True, clip: float = 10.0,
                 epsilon: float = 1e-8):
        self.enabled, self.gamma, self.clip, self.epsilon = enabled, gamma, clip, epsilon
        self.returns = np.zeros(num_envs, np.float64)   # each env's discounted return so far
        self.rms = RunningMeanStd(())
        self._pending = np.zeros(3, np.float64)         # count, sum, sum of squares
        self._refresh()

    def _refresh(self) -> None:
        self._scale = np.float32(1.0 / np.sqrt(self.rms.var + self.epsilon))

    def __call__(self, reward: np.ndarray, done: np.ndarray, valid: np.ndarray,
                 envs: slice = slice(None)) -> np.ndarray:
        """The rewards of one step to learn from (``valid``: the envs that acted; ``done``:
        their episodes ended here). ``envs``: which of the scaler's envs the step is of (an
        IMPALA learner scales each actor's envs in turn)."""
        if not self.enabled:
            return reward
        returns = self.returns[envs]   # a view: updated in place
        returns[:] = np.where(valid, returns * self.gamma + reward, returns)
        acted = returns[valid]
        self._pending += (len(acted), acted.sum(), np.square(acted).sum())
        returns[done] = 0.0
        return np.clip(reward * self._scale, -self.clip, self.clip).astype(np.float32)

    def allreduce_statistics(self, world: World) -> None:
        """Merge every rank's returns of this rollout into the shared statistics."""
        if not self.enabled:
            return
        from mpirl.comm.collectives import allreduce_sum   # (see the module's docstring)
        count, total, total_sq = allreduce_sum(world, self._pending)
        self.rms.merge(count, np.asarray(total), np.asarray(total_sq))
        self._pending[:] = 0.0
        self._refresh()

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rms.load_state_dict(state)
        self._refresh()
