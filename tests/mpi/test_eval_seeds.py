"""Greedy evaluation under MPI: --eval-episodes split over the ranks are all distinct episodes,
and the pooled mean counts each once."""
import numpy as np
import pytest

from mpirl.comm import World
from mpirl.envs.evaluate import Evaluator

NPROCS = (2, 4)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode", ["native", "sync"])
def test_ranks_evaluate_distinct_episodes(mode):
    world = World()
    ev = Evaluator(world, "CartPole-v1", 10, seed=10_007, mode=mode)
    starts = []

    def act(obs):
        if not starts:
            starts.append(obs.copy())
        return np.zeros(len(obs), np.int64)

    mean = ev.run_across_ranks(act)
    first = starts[0] if starts else np.zeros((0, 4), np.float32)
    everyone = np.concatenate(world.allgather_obj(first))
    assert len(everyone) == 10
    assert len({tuple(r) for r in everyone.tolist()}) == 10
    assert ev.run_across_ranks(lambda obs: np.zeros(len(obs), np.int64)) == mean  # same episodes every time
    ev.close()
