"""Observation statistics merge to exactly the statistics of all the data."""
import numpy as np
import pytest

from mpirl.comm import World
from mpirl.envs.normalize import ObsNormalizer, RunningMeanStd


def test_merging_batches_equals_statistics_of_all_data():
    rng = np.random.default_rng(1)
    batches = [rng.normal(loc=i, scale=1 + i, size=(10 + 13 * i, 3)) for i in range(5)]
    rms = RunningMeanStd((3,))
    rms.count, rms.mean, rms.var = 0.0, np.zeros(3), np.zeros(3)
    for b in batches:
        rms.merge(len(b), b.sum(0), np.square(b).sum(0))
    every = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, every.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, every.var(0), rtol=1e-10)
    assert rms.count == len(every)


def test_normaliser_freezes_during_rollout_and_applies_after_sync():
    norm = ObsNormalizer((2,))
    x = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    first = norm(x)
    assert np.allclose(first, norm(x, accumulate=False))  # unchanged until sync
    norm.allreduce_statistics(World())
    out = norm(x, accumulate=False)
    # stats = prior (count 0) merged with the 2 recorded rows (recorded once: accumulate=False)
    assert out.mean(0) == pytest.approx([0.0, 0.0], abs=1e-3)
    state = norm.state_dict()
    other = ObsNormalizer((2,))
    other.load_state_dict(state)
    np.testing.assert_array_equal(other(x, accumulate=False), out)


def test_disabled_normaliser_passes_observations_through():
    norm = ObsNormalizer((2,), enabled=False)
    x = np.array([[10.0, -3.0]])
    np.testing.assert_array_equal(norm(x), x.astype(np.float32))


def test_reward_scaler_fed_env_slices_in_turn_equals_one_fed_whole_steps():
    """An IMPALA learner scales each actor's envs (a slice of its scaler's) block by block: the
    returns, statistics and scaled rewards are those of a scaler fed every env at each step."""
    from mpirl.envs.normalize import RewardScaler
    rng = np.random.default_rng(0)
    T, E = 20, 6
    rewards = rng.normal(size=(T, E)).astype(np.float32)
    done = rng.random((T, E)) < 0.1
    valid = rng.random((T, E)) < 0.9
    whole, sliced = RewardScaler(E, 0.9), RewardScaler(E, 0.9)
    whole.rms.var, sliced.rms.var = np.float64(4.0), np.float64(4.0)
    whole._refresh(), sliced._refresh()
    want = np.stack([whole(rewards[t], done[t], valid[t]) for t in range(T)])
    got = np.zeros_like(want)
    for envs in (slice(0, 2), slice(2, 6)):   # one "actor's block" after the other
        for t in range(T):
            got[t, envs] = sliced(rewards[t, envs], done[t, envs], valid[t, envs], envs)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(sliced.returns, whole.returns)
    np.testing.assert_allclose(sliced._pending, whole._pending)
