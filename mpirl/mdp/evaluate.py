"""Running a greedy tabular policy: in the real gymnasium environment, or in a generated MDP.

Episode i is seeded from seed and i (gymnasium's ``reset(seed=seed + i)``, or a generator seeded
with (seed, i) in a generated MDP) and run by rank i % size, so the figures are the same at any
number of ranks; the per-episode sums are gathered as a small control message.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from mpirl.comm import World
from mpirl.mdp.mdp import make_env


@dataclass
class Evaluation:
    """Mean (and standard error) of the undiscounted and discounted return over ``episodes``;
    ``success_rate`` is None where the MDP has no notion of success."""

    episodes: int
    mean_return: float
    stderr_return: float
    mean_discounted_return: float
    stderr_discounted_return: float
    success_rate: float | None
    mean_length: float
    max_steps: int | None

    def to_dict(self) -> dict:
        return asdict(self)


class _Totals:
    """Running sums of one rank's episodes: count, return, return^2, discounted (and ^2),
    successes, steps."""

    def __init__(self):
        self.sums = np.zeros(7)

    def add(self, ret: float, disc: float, success: bool, steps: int) -> None:
        self.sums += [1, ret, ret * ret, disc, disc * disc, success, steps]

    def combine(self, world: World, max_steps: int | None, has_success: bool) -> Evaluation:
        # seven numbers per rank: a small control message
        n, s, ss, d, dd, wins, steps = map(float, np.sum(world.allgather_obj(self.sums), axis=0))
        n_ = max(n, 1.0)

        def stderr(total, squares):
            var = max(squares / n_ - (total / n_) ** 2, 0.0)
            return math.sqrt(var / max(n - 1, 1.0))

        return Evaluation(int(n), s / n_, stderr(s, ss), d / n_, stderr(d, dd),
                          wins / n_ if has_success else None, steps / n_, max_steps)


def _is_success(done: bool, reward: float, success_reward: float | None) -> bool:
    return bool(done and success_reward is not None and np.isclose(reward, success_reward))


def evaluate_in_env(world: World, env_id: str, env_kwargs: dict, policy: np.ndarray,
                    episodes: int, gamma: float, seed: int = 0, max_steps: int | None = None,
                    success_reward: float | None = None) -> Evaluation:
    """The greedy ``policy`` (n_states,) acting in ``gymnasium.make(env_id, **env_kwargs)``.

    ``max_steps`` overrides the env's own time limit (None keeps it; 1000 where it has none).
    An episode succeeds if it terminates with ``success_reward``.
    """
    extra = {"max_episode_steps": max_steps} if max_steps else {}
    env = make_env(env_id, env_kwargs, **extra)
    limit = env.spec.max_episode_steps if env.spec else None
    if limit is None:   # no time limit of its own: remake it with one
        limit = 1000
        env.close()
        env = make_env(env_id, env_kwargs, max_episode_steps=limit)
    totals = _Totals()
    try:
        for i in range(world.rank, episodes, world.size):
            state, _ = env.reset(seed=seed + i)
            ret = disc = 0.0
            steps, done, reward = 0, False, 0.0
            while not done:
                state, reward, terminated, truncated, _ = env.step(int(policy[state]))
                ret += reward
                disc += gamma ** steps * reward
                steps += 1
                done = terminated or truncated
            totals.add(ret, disc, _is_success(terminated, reward, success_reward), steps)
    finally:
        env.close()
    return totals.combine(world, limit, success_reward is not None)


def evaluate_in_model(world: World, source, policy: np.ndarray, episodes: int, gamma: float,
                      seed: int = 0, max_steps: int | None = None) -> Evaluation:
    """The greedy ``policy`` (n_states,) sampled through ``source``'s own transition rows.

    Episodes start in ``source.start`` and run until a transition that ends the episode, or for
    ``max_steps`` (default: the horizon where gamma ** t < 1e-4, so the discounted return
    is the value of the start state up to that).
    """
    if max_steps is None:
        max_steps = int(min(100_000, max(1, math.ceil(math.log(1e-4) / math.log(gamma))))) \
            if gamma > 0 else 1
    totals = _Totals()
    for i in range(world.rank, episodes, world.size):
        rng = np.random.default_rng([seed, i])
        state = int(source.start)
        ret = disc = 0.0
        steps, done, reward = 0, False, 0.0
        while not done and steps < max_steps:
            rows = source.rows(state, state + 1)
            entries = rows.row(state, int(policy[state]))
            j = entries.start + rng.choice(entries.stop - entries.start, p=rows.prob[entries])
            state, reward, done = int(rows.next_state[j]), float(rows.reward[j]), bool(rows.done[j])
            ret += reward
            disc += gamma ** steps * reward
            steps += 1
        totals.add(ret, disc, _is_success(done, reward, source.success_reward), steps)
    return totals.combine(world, max_steps, source.success_reward is not None)
