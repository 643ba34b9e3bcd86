"""n-step records from a vector env's steps, against a naive per-episode computation."""
import numpy as np
import pytest

from mpirl.replay.buffer import transition_dtype
from mpirl.replay.nstep import NStepAdder


def _naive_records(episodes, n, gamma):
    """Every (obs, action, return, next_obs, done, discount) of every episode, the long way."""
    out = []
    for steps, terminated in episodes:  # steps: list of (obs, action, reward, next_obs)
        for t in range(len(steps)):
            k = min(n, len(steps) - t)
            ret = sum(gamma ** j * steps[t + j][2] for j in range(k))
            last = t + k == len(steps)
            out.append((steps[t][0], steps[t][1], ret, steps[t + k - 1][3],
                        bool(terminated and last), gamma ** k))
    return sorted(out)


@pytest.mark.parametrize("n", [1, 3, 5])
def test_nstep_records_match_naive_returns(n):
    gamma, num_envs, T = 0.9, 3, 60
    rng = np.random.default_rng(n)
    adder = NStepAdder(num_envs, n, gamma, transition_dtype((1,)))
    produced = []
    episodes, current = [], [[] for _ in range(num_envs)]
    obs = rng.integers(0, 1000, size=(num_envs, 1)).astype(np.float32)
    valid = np.ones(num_envs, bool)   # next-step autoreset: the step after an episode only resets
    acted = 0
    for t in range(T):
        action = rng.integers(0, 4, num_envs)
        reward = rng.normal(size=num_envs).astype(np.float32)
        next_obs = rng.integers(0, 1000, size=(num_envs, 1)).astype(np.float32)
        terminated = rng.random(num_envs) < 0.08
        truncated = ~terminated & (rng.random(num_envs) < 0.05)
        if t == T - 1:
            truncated = ~terminated   # end every episode so every step has left
        terminated &= valid
        truncated &= valid
        for e in np.nonzero(valid)[0]:
            acted += 1
            current[e].append((float(obs[e, 0]), int(action[e]), float(reward[e]),
                               float(next_obs[e, 0])))
            if terminated[e] or truncated[e]:
                episodes.append((current[e], bool(terminated[e])))
                current[e] = []
        records = adder.add(obs, action, reward, next_obs, terminated, truncated, valid)
        produced += [(float(r["obs"][0]), int(r["action"]), float(r["reward"]),
                      float(r["next_obs"][0]), bool(r["done"]), float(r["discount"]))
                     for r in records]
        obs = rng.integers(0, 1000, size=(num_envs, 1)).astype(np.float32)
        valid = ~(terminated | truncated)
    assert len(produced) == acted                   # one record per env step that acted
    assert acted < T * num_envs                     # (some reset steps were left out)
    expected = _naive_records(episodes, n, gamma)
    assert len(expected) == acted
    for got, want in zip(sorted(produced), expected):
        assert got[:2] == want[:2] and got[3:5] == want[3:5]
        assert got[2] == pytest.approx(want[2], abs=1e-5)
        assert got[5] == pytest.approx(want[5], rel=1e-6)
