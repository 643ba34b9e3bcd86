"""What the actors of DQN, SAC and TD3 write to the replay memory, and what their learners read.

The replay memory hands out records (mpirl.replay); their observations are raw and are normalised
here with the statistics of now (multi-task: each row with its own task's), so the merged
statistics may keep moving without making the memory stale. Pixels pass as uint8. On --resume
the memory comes back as --save-replay kept it (mpirl.replay.snapshot), or starts empty.
"""
from __future__ import annotations

import numpy as np
import torch

from mpirl.replay.snapshot import has_replay, load_replay


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


def restore_memory(cfg, world, run, replay, adder, restored: dict) -> bool:
    """With --save-replay, every rank's memory as the checkpoint ``restored`` (its counters, from
    restore_or_start) left it; True if restored (every rank, or none: the memories must agree),
    else they stay empty, said once. The adder's waiting steps come back only with the envs."""
    update = restored["update"]
    kept = world.all_ranks(cfg.save_replay and has_replay(cfg.run_dir, world.rank, update))
    if kept:
        load_replay(cfg.run_dir, world.rank, replay,
                    adder if restored["envs_restored"] else None)
        run.log.print(f"replay memory restored ({len(replay.memory):,} transitions on rank 0)")
    else:
        run.log.print(f"note: the replay memory was not saved (--save-replay keeps it); it "
                      f"restarts empty and learning resumes after {cfg.learning_starts:,} new "
                      f"global steps")
    return kept
