"""Splitting a layer list into stages: balanced by parameter count (against brute force) or explicit."""
import itertools

import pytest
import torch.nn as nn

from mpirl.pipeline.partition import balanced, blocks_of, param_count, parse_explicit, partition


def _brute_force_best(costs, stages):
    n = len(costs)
    best = float("inf")
    for cuts in itertools.combinations(range(1, n), stages - 1):
        bounds = (0, *cuts, n)
        best = min(best, max(sum(costs[a:b]) for a, b in zip(bounds, bounds[1:])))
    return best


@pytest.mark.parametrize("costs", [[5, 1, 1, 1, 5], [1] * 7, [10, 1, 1, 1, 1, 1, 1], [3, 9, 2, 7, 4, 4],
                                   [0, 4, 0, 4], [100, 1, 100]])
def test_balanced_split_is_optimal_against_brute_force(costs):
    for stages in range(1, len(costs) + 1):
        sizes = balanced(costs, stages)
        assert len(sizes) == stages and all(s >= 1 for s in sizes) and sum(sizes) == len(costs)
        bounds = [0] + list(itertools.accumulate(sizes))
        worst = max(sum(costs[a:b]) for a, b in zip(bounds, bounds[1:]))
        assert worst == _brute_force_best(costs, stages)


def test_more_stages_than_layers_is_refused():
    with pytest.raises(ValueError, match="cannot split 3 layer block"):
        balanced([1, 1, 1], 4)


def test_blocks_keep_activations_with_the_layer_before_them():
    layers = [nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)]
    blocks = blocks_of(layers)
    assert [len(b) for b in blocks] == [2, 2, 1]
    lead = [nn.Flatten(), nn.Linear(4, 2), nn.Tanh()]
    assert blocks_of(lead) == [lead]  # a leading parameter-free layer joins the first block


def test_partition_of_an_mlp_balances_parameters_and_keeps_layer_order():
    widths = [8, 64, 64, 64, 64, 2]
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    parts = partition(layers, 2)
    assert [m for part in parts for m in part] == layers  # consecutive, nothing lost
    counts = [param_count(p) for p in parts]
    assert counts == [8 * 64 + 64 + 64 * 64 + 64, 2 * (64 * 64 + 64) + 64 * 2 + 2]


def test_explicit_partition_and_its_errors():
    layers = [nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2), nn.Linear(2, 2)]
    parts = partition(layers, 2, spec="1,2")
    assert parts == [layers[:2], layers[2:]]
    assert parse_explicit([2, 1], 3, 2) == [2, 1]
    for bad in ("2,2", "1", "0,3", "a,b"):
        with pytest.raises(ValueError, match="--partition"):
            parse_explicit(bad, 3, 2)


def test_the_trainers_models_split_into_stages_that_compose_to_the_whole():
    """The PPO actor-critic, and the DQN Q-network's layer list: stages run one after another
    (no MPI) give the unsharded model's output."""
    import gymnasium as gym
    import torch

    from mpirl.models.actor_critic import ActorCritic
    from mpirl.models.qnet import QNetwork
    from mpirl.pipeline.stage import Stage

    torch.manual_seed(0)
    actor_critic = ActorCritic(4, gym.spaces.Discrete(2), (16, 16, 16))
    qnet = QNetwork(4, 3, (16, 16, 16))
    x = torch.randn(5, 4)
    for model, layers in ((actor_critic, list(actor_critic)),
                          (qnet, [*qnet.trunk, qnet.act, qnet.q])):
        for stages in range(1, 5):
            parts = partition(layers, stages)
            out = x
            for s, part in enumerate(parts):
                out = Stage(part, s, stages).infer(out)
            torch.testing.assert_close(out, model(x).detach(), rtol=0, atol=1e-6)
