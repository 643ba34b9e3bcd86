"""Replay memory: sampling frequencies (chi-square), importance weights (closed form), the ring."""
import numpy as np
import pytest

from mpirl.replay.buffer import (PRIORITY_EPS, ReplayBuffer, anneal_beta, importance_weights,
                                 transition_dtype)
from tests.chisquare import assert_frequencies, chi2_critical, chi2_statistic

DTYPE = transition_dtype((3,))
pytestmark = pytest.mark.usefixtures("kernel_backend")   # the C kernels and their numpy twins


def _records(ids):
    """Records whose obs[0] is their id, so a sampled record says which one it is."""
    out = np.zeros(len(ids), dtype=DTYPE)
    out["obs"][:, 0] = ids
    out["action"] = ids
    return out


def _filled(capacity, priorities, alpha):
    memory = ReplayBuffer(capacity, DTYPE, prioritized=True, alpha=alpha)
    slots = memory.add(_records(np.arange(len(priorities))))
    memory.update_priorities(slots, priorities)
    return memory


def test_prioritized_frequencies_are_proportional_to_priority_power_alpha():
    alpha = 0.6
    priorities = np.random.default_rng(0).exponential(size=40) + 0.01
    memory = _filled(64, priorities, alpha)
    rng = np.random.default_rng(1)
    counts = np.zeros(40)
    for _ in range(100):
        records, slots, _ = memory.sample(1000, rng, beta=0.4)
        np.testing.assert_array_equal(records["action"], slots)
        counts += np.bincount(slots, minlength=40)
    expected = (priorities + PRIORITY_EPS) ** alpha
    assert_frequencies(counts, expected / expected.sum())
    # the test has power: the same counts are far from the alpha = 1 distribution
    wrong = priorities / priorities.sum()
    assert chi2_statistic(counts, wrong) > 10 * chi2_critical(39)


def test_uniform_frequencies_are_flat_over_the_filled_part():
    memory = ReplayBuffer(100, DTYPE, prioritized=False)
    memory.add(_records(np.arange(30)))
    rng = np.random.default_rng(2)
    counts = np.zeros(30)
    for _ in range(50):
        _, slots, weights = memory.sample(600, rng, beta=0.4)
        assert np.all(weights == 1.0)
        counts += np.bincount(slots, minlength=30)
    assert_frequencies(counts, np.full(30, 1 / 30))


def test_importance_weights_match_the_closed_form():
    alpha, beta = 0.7, 0.5
    priorities = np.array([0.1, 1.0, 2.0, 5.0, 0.5])
    memory = _filled(8, priorities, alpha)
    _, slots, weights = memory.sample(64, np.random.default_rng(3), beta=beta)
    p = (priorities + PRIORITY_EPS) ** alpha
    probs = p / p.sum()
    w = (len(priorities) * probs[slots]) ** -beta
    np.testing.assert_allclose(weights, w / w.max(), rtol=1e-6)
    assert weights.max() == pytest.approx(1.0) and weights.dtype == np.float32


def test_importance_weights_helper_and_beta_annealing():
    probs = np.array([0.5, 0.25, 0.25])
    np.testing.assert_allclose(importance_weights(probs, 4, 1.0), [0.5, 1.0, 1.0])
    np.testing.assert_allclose(importance_weights(probs, 4, 1.0, max_weight=2.0), [0.25, 0.5, 0.5])
    assert anneal_beta(0.4, 0.0) == 0.4
    assert anneal_beta(0.4, 0.5) == pytest.approx(0.7)
    assert anneal_beta(0.4, 3.0) == 1.0


def test_ring_keeps_the_newest_and_new_records_get_the_max_priority():
    memory = ReplayBuffer(5, DTYPE, prioritized=True, alpha=1.0)
    memory.add(_records([0, 1, 2]))
    memory.update_priorities([0, 1, 2], [3.0, 0.5, 0.5])
    memory.add(_records([3, 4, 5, 6]))             # wraps: 5 and 6 overwrite 0 and 1
    assert len(memory) == 5 and memory.added == 7
    np.testing.assert_array_equal(memory.storage["action"], [5, 6, 2, 3, 4])
    leaves = memory.tree.leaves[:5]
    top, low = 3 + PRIORITY_EPS, 0.5 + PRIORITY_EPS
    np.testing.assert_allclose(leaves, [top, top, low, top, top])
    assert memory.total == pytest.approx(leaves.sum())


def test_wrong_records_and_bad_settings_are_refused():
    memory = ReplayBuffer(5, DTYPE)
    with pytest.raises(TypeError):
        memory.add(np.zeros(2, dtype=transition_dtype((4,))))
    with pytest.raises(ValueError):
        memory.sample(1, np.random.default_rng(0), beta=0.4)
    with pytest.raises(ValueError):
        ReplayBuffer(5, DTYPE, alpha=1.5)
