"""Greedy evaluation splits --eval-episodes over the ranks: every rank's episodes must be distinct
(not the same start states on every rank) and reproducible for a given (seed, rank count)."""
import numpy as np
import pytest

from mpirl.envs.evaluate import Evaluator


class _Comm:
    def Allreduce(self, sendbuf, recvbuf, op=None):  # a fake world: each rank sums only itself
        pass


class FakeWorld:
    """Rank ``rank`` of a simulated world of ``size`` ranks (only what Evaluator uses)."""

    def __init__(self, rank: int, size: int):
        self.rank, self.size, self.comm = rank, size, _Comm()
        self.is_root = rank == 0


def first_obs(world, episodes=10, seed=10_123, mode="sync", evaluator=None):
    """The start observations of a rank's evaluation episodes (rows), via Evaluator.run."""
    ev = evaluator or Evaluator(world, "CartPole-v1", episodes, seed=seed, mode=mode)
    seen = []

    def act(obs):
        if not seen:
            seen.append(obs.copy())
        return np.zeros(len(obs), np.int64)

    ev.run_across_ranks(act)
    if evaluator is None:
        ev.close()
    return seen[0]


def rows(a):
    return {tuple(np.round(r, 7)) for r in a}


@pytest.mark.parametrize("mode", ["native", "sync"])
@pytest.mark.parametrize("size", [2, 4])
def test_every_ranks_eval_episodes_are_distinct(mode, size):
    starts = [first_obs(FakeWorld(r, size), mode=mode) for r in range(size)]
    assert sum(len(s) for s in starts) == 10
    assert len(rows(np.concatenate(starts))) == 10, "ranks run the same evaluation episodes"


@pytest.mark.parametrize("mode", ["native", "sync"])
def test_eval_episodes_are_reproducible_for_a_seed_and_rank(mode):
    world = FakeWorld(1, 2)
    a = first_obs(world, mode=mode)
    assert np.array_equal(a, first_obs(FakeWorld(1, 2), mode=mode))          # a new evaluator
    ev = Evaluator(world, "CartPole-v1", 10, seed=10_123, mode=mode)
    assert np.array_equal(first_obs(world, evaluator=ev), a)                  # every evaluation
    assert np.array_equal(first_obs(world, evaluator=ev), a)
    ev.close()
    assert not np.array_equal(first_obs(world, seed=10_124, mode=mode), a)   # and seed-dependent


def test_sync_eval_episodes_do_not_depend_on_the_rank_count():
    """With one env per episode seeded seed + global episode index, the set of episodes is the
    same whatever the number of ranks."""
    alone = rows(first_obs(FakeWorld(0, 1)))
    for size in (2, 3, 4):
        split = np.concatenate([first_obs(FakeWorld(r, size)) for r in range(size)])
        assert rows(split) == alone
