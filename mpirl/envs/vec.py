"""One rank's vector env: gymnasium's, with reset-step bookkeeping, its observation normaliser, its
reward scaler and its episode statistics.

Vector envs in gymnasium >= 1.0 reset finished sub-environments on the *next* step ("next-step
autoreset"): the step after an episode ends returns the first observation of the new episode,
reward 0, and ignores the action. :class:`VecEnv` tracks which steps are such reset steps
(``valid`` is False for them) so learners can leave them out, and keeps episode statistics.
"""
from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch

from mpirl.envs import state as envstate
from mpirl.envs.episodes import EpisodeStats
from mpirl.envs.make import clip_to_space
from mpirl.comm.world import World
from mpirl.envs.normalize import ObsNormalizer, RewardScaler


class VecEnv:
    """A rank's vector env (``envs``, from :func:`~mpirl.envs.make.make_vec`): :meth:`step` takes
    actions and returns (reward, terminated, truncated, valid), the reward scaled by
    ``reward_scaler`` when there is one; :meth:`observe` gives the observations normalised by
    ``normalizer``. Episode statistics record the env's own rewards.

    ``valid`` holds, for the step about to be taken, which sub-envs will really act (False right
    after an episode ended: that step only resets).
    """

    def __init__(self, envs: gym.vector.VectorEnv, seed: int,
                 normalizer: ObsNormalizer | None = None,
                 reward_scaler: RewardScaler | None = None, step_delay_s: float = 0.0,
                 sign_rewards: bool = False):
        self.envs = envs
        self.sign_rewards = sign_rewards   # learn from the rewards' signs (Atari)
        self.step_delay_s = step_delay_s   # a straggler on purpose (MPIRL_FAULT=slow@RANK:MS)
        self.reward_scaler = reward_scaler
        self.num_envs = num_envs = envs.num_envs
        self.single_observation_space = self.envs.single_observation_space
        self.single_action_space = self.envs.single_action_space
        self.normalizer = normalizer
        self.stats = EpisodeStats(num_envs)
        raw, _ = self.envs.reset(seed=seed)
        self.envs.action_space.seed(seed)
        self.raw_obs = raw
        self.valid = np.ones(num_envs, bool)
        self.last_raw_reward, self.last_info = np.zeros(num_envs), {}

    def observe(self) -> np.ndarray:
        """The current observation, normalised (and recorded for the statistics)."""
        return self.normalizer(self.raw_obs) if self.normalizer else self.raw_obs.astype(np.float32)

    def step(self, actions: np.ndarray):
        """Step all sub-envs. Returns (reward, terminated, truncated, valid) of THIS step."""
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        raw, reward, terminated, truncated, info = self.envs.step(
            clip_to_space(actions, self.single_action_space))
        self.last_raw_reward, self.last_info = reward, info   # the env's own, as it gave them
        valid = self.valid
        done = terminated | truncated
        self.stats.record(reward, done, valid)   # returns in the env's units: game scores
        if self.sign_rewards:
            reward = np.sign(reward)
        self.raw_obs = raw
        self.valid = ~done
        if self.reward_scaler is not None:
            reward = self.reward_scaler(reward, done, valid)
        return reward.astype(np.float32), terminated, truncated, valid

    def allreduce_statistics(self, world: World) -> None:
        """Merge the rollout's observation (and reward) statistics over ``world``'s ranks."""
        self.normalizer.allreduce_statistics(world)
        if self.reward_scaler is not None:
            self.reward_scaler.allreduce_statistics(world)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this env stands (see envstate)."""
        return {"env": envstate.capture(self.envs), "raw_obs": torch.from_numpy(self.raw_obs.copy()),
                "valid": torch.from_numpy(self.valid.copy()),
                "running_return": torch.from_numpy(self.stats.running_return.copy()),
                "running_length": torch.from_numpy(self.stats.running_length.copy()),
                **({"discounted_return": torch.from_numpy(self.reward_scaler.returns.copy())}
                   if self.reward_scaler is not None else {})}

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
        if self.reward_scaler is not None and "discounted_return" in state:
            self.reward_scaler.returns = state["discounted_return"].numpy().copy()
        return True

    def close(self):
        self.envs.close()
