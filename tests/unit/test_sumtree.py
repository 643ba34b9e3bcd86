"""The sum-tree against a naive numpy array: single and batched updates, prefix-sum search."""
import numpy as np
import pytest

from mpirl.replay.sumtree import SumTree

pytestmark = pytest.mark.usefixtures("kernel_backend")   # the C kernels and their numpy twins

# 5000 leaves reach below the cumsum-solved top level (1024 nodes), so the descent is exercised
CAPACITIES = (1, 2, 3, 1000, 5000)


def _assert_invariants(tree: SumTree, naive: np.ndarray) -> None:
    """Leaves equal the naive array; every stored node equals the sum of the leaves below it."""
    np.testing.assert_array_equal(tree.leaves, naive)
    padded = np.zeros(tree.leaf0)
    padded[:naive.size] = naive
    for level in range(tree._top, tree.depth + 1):
        width = 1 << level
        expected = padded.reshape(width, -1).sum(axis=1)
        np.testing.assert_allclose(tree.tree[width:2 * width], expected, rtol=1e-9, atol=1e-9)
    assert tree.total == pytest.approx(naive.sum(), rel=1e-12, abs=1e-12)


def _assert_find_matches_searchsorted(tree: SumTree, naive: np.ndarray, rng) -> None:
    prefix = rng.random(2000) * naive.sum()
    expected = np.searchsorted(np.cumsum(naive), prefix, side="right")
    np.testing.assert_array_equal(tree.find(prefix), expected)


@pytest.mark.parametrize("capacity", CAPACITIES)
def test_single_updates_keep_prefix_sums_of_naive_array(capacity):
    rng = np.random.default_rng(capacity)
    tree, naive = SumTree(capacity), np.zeros(capacity)
    for _ in range(300):
        i, value = rng.integers(capacity), rng.random() * 10
        tree.update([i], [value])
        naive[i] = value
    _assert_invariants(tree, naive)
    _assert_find_matches_searchsorted(tree, naive, rng)


@pytest.mark.parametrize("capacity", CAPACITIES)
def test_batched_updates_with_repeats_match_naive_assignment(capacity):
    rng = np.random.default_rng(100 + capacity)
    tree, naive = SumTree(capacity), np.zeros(capacity)
    for _ in range(50):
        idx = rng.integers(0, capacity, size=rng.integers(1, 300))   # repeats are likely
        values = rng.exponential(size=idx.size)
        tree.update(idx, values)
        naive[idx] = values                                            # the last write wins
        _assert_invariants(tree, naive)
    _assert_find_matches_searchsorted(tree, naive, rng)


def test_zero_leaves_are_never_found_and_edges_are_clipped():
    tree = SumTree(5000)
    naive = np.zeros(5000)
    naive[::7] = np.arange(1, naive[::7].size + 1)
    tree.update(np.arange(5000), naive)
    rng = np.random.default_rng(3)
    found = tree.find(np.concatenate([[0.0, np.nextafter(tree.total, 0)],
                                      rng.random(5000) * tree.total]))
    assert np.all(naive[found] > 0)
    assert tree.find([tree.total * 2])[0] < tree.capacity


def test_rebuild_after_many_updates_is_exact_and_keeps_search():
    capacity = 2000
    tree, naive = SumTree(capacity), np.zeros(capacity)
    rng = np.random.default_rng(7)
    for _ in range(30):  # 30 * 256 writes > capacity: at least one automatic rebuild
        idx = rng.integers(0, capacity, 256)
        values = rng.random(256) * 1e3
        tree.update(idx, values)
        naive[idx] = values
    assert tree._writes_since_rebuild < capacity
    _assert_invariants(tree, naive)
    _assert_find_matches_searchsorted(tree, naive, rng)


def test_bad_updates_are_refused():
    tree = SumTree(10)
    with pytest.raises(IndexError):
        tree.update([10], [1.0])
    with pytest.raises(ValueError):
        tree.update([0], [-1.0])
    with pytest.raises(ValueError):
        tree.update([0], [np.nan])
