"""Environments for one rank: a gymnasium vector env, seeding, and global observation statistics.

Vector envs in gymnasium >= 1.0 reset finished sub-environments on the *next* step ("next-step
autoreset"): the step after an episode ends returns the first observation of the new episode,
reward 0, and ignores the action. :class:`VecEnv` tracks which steps are such reset steps
(``valid`` is False for them) so learners can leave them out, and keeps episode statistics.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from mpirl import envstate
from mpirl.errors import ConfigError
from mpirl.comm.collectives import allreduce_sum
from mpirl.comm.world import World
from mpirl.registry import env_spec


def make_vec(env_id: str, num_envs: int, mode: str = "auto") -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies: the env's native vectorised implementation when it
    has one (``auto``/``native``; CartPole's is ~10x faster per step than a loop of single
    envs), otherwise gymnasium's sync or async vector env."""
    spec = env_spec(env_id)
    if mode in ("auto", "native") and spec.vector_entry_point is not None:
        return gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point")
    if mode == "native":
        raise ConfigError(f"{env_id} has no native vectorised implementation; "
                          "use --vector-mode sync or async")
    return gym.make_vec(env_id, num_envs, vectorization_mode="async" if mode == "async" else "sync")


def check_spaces(envs: gym.vector.VectorEnv, env_id: str, allowed=(gym.spaces.Discrete, gym.spaces.Box),
                 algo: str = "ppo") -> None:
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
        raise ConfigError(f"{env_id}: only flat vector observations are supported, "
                          f"not {obs_space}")
    if not isinstance(act_space, allowed):
        names = " or ".join(a.__name__ for a in allowed)
        raise ConfigError(f"{env_id}: --algo {algo} needs a {names} action space, not {act_space}")


def clip_to_space(actions: np.ndarray, space: gym.Space) -> np.ndarray:
    """Box actions clipped to the space's bounds (the Gaussian policy is unbounded); others as is."""
    if isinstance(space, gym.spaces.Box):
        return np.clip(actions, space.low, space.high)
    return actions


# -- observation statistics ---------------------------------------------------------------------
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
    (count, sum, sum of squares); :meth:`sync` Allreduces those and merges them, so every rank
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
        """Normalised copy of ``obs`` (shape (batch, obs_dim)); records it for the next sync."""
        if not self.enabled:
            return obs.astype(np.float32, copy=False)
        if accumulate:
            obs64 = obs.astype(np.float64)
            self._pending[0] += obs64.sum(0)
            self._pending[1] += np.square(obs64).sum(0)
            self._pending_count += len(obs)
        return np.clip((obs - self._mean) * self._inv_std, -self.clip, self.clip).astype(np.float32)

    def stored(self, raw: np.ndarray) -> np.ndarray:
        """What a replay memory keeps of raw observations ``raw`` (B, d): ``raw`` itself (they
        are normalised when replayed, with the statistics of then: :meth:`normalize_stored`)."""
        return raw

    def normalize_stored(self, obs: np.ndarray, task: np.ndarray | None = None) -> np.ndarray:
        """Stored observations (see :meth:`stored`) normalised as for acting, without recording
        them. (``task``: the task of each row, for normalisers that know several tasks.)"""
        return self(obs, accumulate=False)

    def sync(self, world: World) -> None:
        """Merge every rank's accumulated observations into the shared statistics."""
        if not self.enabled:
            return
        flat = np.concatenate([[self._pending_count], self._pending.reshape(-1)])
        total = allreduce_sum(world, flat)
        count, sums = total[0], total[1:].reshape(self._pending.shape)
        self.rms.merge(count, sums[0], sums[1])
        self._pending[:] = 0.0
        self._pending_count = 0
        self._refresh()

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rms.load_state_dict(state)
        self._refresh()


# -- one rank's vector env with reset-step bookkeeping and episode statistics --------------------
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


def global_episode_stats(world: World, returns: list, lengths: list) -> dict:
    """Episode statistics pooled over all ranks (one Allreduce)."""
    r = np.asarray(returns, np.float64)
    n, s, ss, ls = allreduce_sum(world, [len(r), r.sum(), np.square(r).sum(), float(sum(lengths))])
    if n == 0:
        return {"episodes": 0}
    mean = s / n
    return {"episodes": int(n), "episode_return_mean": float(mean),
            "episode_return_std": float(np.sqrt(max(ss / n - mean * mean, 0.0))),
            "episode_length_mean": float(ls / n)}


class VecEnv:
    """A rank's vector env: :meth:`step` takes actions and returns (reward, terminated,
    truncated, valid); :meth:`observe` gives the normalised observations.

    ``valid`` holds, for the step about to be taken, which sub-envs will really act (False right
    after an episode ended: that step only resets).
    """

    def __init__(self, env_id: str, num_envs: int, seed: int, mode: str = "auto",
                 normalizer: ObsNormalizer | None = None):
        self.env_id = env_id
        self.envs = make_vec(env_id, num_envs, mode)
        self.num_envs = num_envs
        self.single_observation_space = self.envs.single_observation_space
        self.single_action_space = self.envs.single_action_space
        self.normalizer = normalizer
        self.stats = EpisodeStats(num_envs)
        raw, _ = self.envs.reset(seed=seed)
        self.envs.action_space.seed(seed)
        self.raw_obs = raw
        self.valid = np.ones(num_envs, bool)

    def observe(self) -> np.ndarray:
        """The current observation, normalised (and recorded for the statistics)."""
        return self.normalizer(self.raw_obs) if self.normalizer else self.raw_obs.astype(np.float32)

    def step(self, actions: np.ndarray):
        """Step all sub-envs. Returns (reward, terminated, truncated, valid) of THIS step."""
        raw, reward, terminated, truncated, _ = self.envs.step(clip_to_space(actions, self.single_action_space))
        valid = self.valid
        done = terminated | truncated
        self.stats.record(reward, done, valid)
        self.raw_obs = raw
        self.valid = ~done
        return reward.astype(np.float32), terminated, truncated, valid

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this env stands (see envstate)."""
        return {"env": envstate.capture(self.envs), "raw_obs": torch.from_numpy(self.raw_obs.copy()),
                "valid": torch.from_numpy(self.valid.copy()),
                "running_return": torch.from_numpy(self.stats.running_return.copy()),
                "running_length": torch.from_numpy(self.stats.running_length.copy())}

    def load_state_dict(self, state: dict) -> bool:
        """Restore a saved state; False (fresh episodes) where the env's state was not saved, or
        was saved from another kind of vector env."""
        if state.get("env") is None or len(state["valid"]) != self.num_envs:
            return False
        if not envstate.restore(self.envs, state["env"]):
            return False
        self.raw_obs = state["raw_obs"].numpy().copy()
        self.valid = state["valid"].numpy().copy()
        self.stats.running_return = state["running_return"].numpy().copy()
        self.stats.running_length = state["running_length"].numpy().copy()
        return True

    def close(self):
        self.envs.close()


# -- evaluation --------------------------------------------------------------------------------
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

    def run(self, act, normalizer: ObsNormalizer | None = None) -> float:
        """Mean return over all ranks' episodes. ``act(obs) -> actions`` is deterministic."""
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
