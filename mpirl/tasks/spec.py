"""What ``--tasks`` asks for, checked before any training: parsing, rank assignment, targets.

Kept free of torch (like mpirl.envs.make) so that bad multi-task input is reported in a fraction
of a second; the trainer's pieces are in mpirl.tasks.multi and mpirl.tasks.pieces.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from mpirl.envs.atari import Preprocessing, is_atari
from mpirl.envs.make import env_spec
from mpirl.errors import ConfigError


def parse_tasks(text: str) -> list[tuple[str, int]]:
    """``"A,B"`` -> [(A, 1), (B, 1)]; ``"A:4,B:2"`` -> [(A, 4), (B, 2)]; ConfigError if bad."""
    items = [item.strip() for item in str(text).split(",")]
    if not text or not all(items):
        raise ConfigError(f"--tasks {text!r}: expected comma-separated env ids, e.g. "
                          "CartPole-v1,Acrobot-v1 or CartPole-v1:4,Acrobot-v1:2")
    tasks = []
    for item in items:
        env_id, sep, weight = item.partition(":")
        if sep and not (weight.isdigit() and int(weight) >= 1):
            raise ConfigError(f"--tasks: malformed weight {weight!r} in {item!r} "
                              "(a weight is a whole number of ranks >= 1, e.g. CartPole-v1:4)")
        tasks.append((env_id, int(weight) if sep else 1))
    ids = [env_id for env_id, _ in tasks]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"--tasks names {', '.join(repeated)} more than once")
    return tasks


def env_ids(cfg) -> list[str]:
    """The environments the run trains in: --env-id, or --tasks' (none when --tasks does not
    parse: the checks report that apart)."""
    if not cfg.tasks:
        return [cfg.env_id]
    try:
        return [env_id for env_id, _ in parse_tasks(cfg.tasks)]
    except ConfigError:
        return []


def parse_targets(text: str | None, task_ids: list[str]) -> dict[str, float]:
    """``"A:475,B:-100"`` -> {A: 475.0, B: -100.0}, every name one of ``task_ids``."""
    targets: dict[str, float] = {}
    for item in (text.split(",") if text else []):
        env_id, sep, value = item.strip().rpartition(":")
        try:
            targets[env_id] = float(value)
        except ValueError:
            env_id = ""
        if not sep or not env_id:
            raise ConfigError(f"--task-targets: malformed entry {item!r} (expected ENV:RETURN, "
                              "e.g. CartPole-v1:475)")
        if env_id not in task_ids:
            raise ConfigError(f"--task-targets names {env_id}, which is not one of --tasks "
                              f"({', '.join(task_ids)})")
    return targets


def rank_counts(n_ranks: int, weights: list[int]) -> list[int]:
    """Ranks per task, in proportion to ``weights`` (largest remainders get the spare ranks;
    equal weights give counts that differ by at most one). Exact when sum(weights) == n_ranks."""
    if len(weights) > n_ranks:
        raise ConfigError(f"{len(weights)} tasks but only {n_ranks} rank(s): every task needs at "
                          "least one rank (start more ranks or name fewer tasks)")
    quotas = [n_ranks * w / sum(weights) for w in weights]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda k: (counts[k] - quotas[k], k))
    for k in by_remainder[:n_ranks - sum(counts)]:
        counts[k] += 1
    if min(counts) == 0:
        raise ConfigError(f"--tasks weights {weights} leave task(s) "
                          f"{[k for k, c in enumerate(counts) if c == 0]} without a rank at "
                          f"{n_ranks} ranks (make the weights add up to the number of ranks)")
    return counts


def assign_tasks(n_ranks: int, weights: list[int]) -> list[int]:
    """The task of each rank, (n_ranks,): tasks interleaved along the ranks (rank r gets task
    r % K when the weights are equal: round-robin), each task spread evenly over its share."""
    slots = [((j + 0.5) / count, k) for k, count in enumerate(rank_counts(n_ranks, weights))
             for j in range(count)]
    return [k for _, k in sorted(slots)]


def task_spaces(env_id: str, preprocessing: Preprocessing | None = None) -> tuple[int | tuple, int]:
    """(observation width, number of actions) of a task; an Atari game's observation is the
    shape of its preprocessed frame stack (``preprocessing``: the run's), its actions the game's
    minimal set."""
    env_spec(env_id)   # (registers the ALE's ids)
    env = gym.make(env_id)
    try:
        if is_atari(env_id):
            return (preprocessing or Preprocessing()).obs_shape, int(env.action_space.n)
        return int(env.observation_space.shape[0]), int(env.action_space.n)
    finally:
        env.close()


def pad_and_tag(obs: np.ndarray, width: int, task: int, num_tasks: int) -> np.ndarray:
    """The observation every task's network sees: (B, d) observations -> (B, width + K) float32,
    zero-padded to the widest task's ``width``, then the one-hot of ``task``."""
    out = np.zeros((len(obs), width + num_tasks), np.float32)
    out[:, :obs.shape[1]] = obs
    out[:, width + task] = 1.0
    return out
