"""What the actors of DQN, SAC and TD3 write to the replay memory, and what their learners read.

The replay memory hands out records (mpirl.replay); their observations are raw and are normalised
here with the statistics of now (multi-task: each row with its own task's), so the merged
statistics may keep moving without making the memory stale. Pixels pass as uint8.
"""
from __future__ import annotations

import numpy as np
import torch


class Transitions:
    """obs, actions, rewards (n-step returns), next_obs, dones (float), discounts (g^k) and
    importance weights, each with the batch as its leading dimension."""

    def __init__(self, obs, actions, rewards, next_obs, dones, discounts, weights):
        self.obs, self.actions, self.rewards, self.next_obs = obs, actions, rewards, next_obs
        self.dones, self.discounts, self.weights = dones, discounts, weights

    @classmethod
    def of(cls, records: np.ndarray, normalizer, weights: np.ndarray) -> "Transitions":
        task = records["task"] if "task" in records.dtype.names else None

        def column(name: str) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(records[name]))

        def obs(name: str) -> torch.Tensor:
            return torch.from_numpy(normalizer.normalize_replayed(
                np.ascontiguousarray(records[name]), task))

        return cls(obs("obs"), column("action"), column("reward"), obs("next_obs"),
                   column("done").float(), column("discount"),
                   torch.from_numpy(np.ascontiguousarray(weights)))


def step_into_replay(envs, actions: np.ndarray, adder, replay) -> None:
    """Step every env of ``envs`` with ``actions`` and insert what the step completes: the
    ``adder`` turns steps into the memory's rows (n-step records, or frame slots), raw
    observations as the memory keeps them (multi-task: padded to the widest). Collective: the
    replay's insert."""
    normalizer = envs.normalizer
    raw_obs = normalizer.for_replay(envs.raw_obs)
    rewards, terminated, truncated, valid = envs.step(actions)
    replay.add(adder.add(raw_obs, actions, rewards, normalizer.for_replay(envs.raw_obs),
                         terminated, truncated, valid))
