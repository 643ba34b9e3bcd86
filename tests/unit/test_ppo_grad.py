"""The hand-written PPO gradient against autograd on the same model, batch and settings."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from mpirl.algos.ppo import AutogradGradients, Batch, ManualGradients, ppo_loss
from mpirl.algos.ppo_grad import manual_gradients
from mpirl.config import Config
from mpirl.models.actor_critic import ActorCritic, Policy, SeparateActorCritic

SPACES = {"discrete": (4, gym.spaces.Discrete(3)),
          "box": (5, gym.spaces.Box(-1.0, 1.0, (2,), np.float32))}


def _batch(model, obs_dim, B, seed):
    """A minibatch whose ratios and value changes reach past the clip range on both sides."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, obs_dim, generator=g)
    if model.continuous:
        torch.nn.init.normal_(model.head.log_std, 0.0, 0.3, generator=g)
        actions = torch.randn(B, model.action_dim, generator=g)
    else:
        actions = torch.randint(0, model.action_dim, (B,), generator=g).float()
    with torch.no_grad():
        params, value = model.split(model(obs))
        logp, _ = Policy(model.continuous, model.head.log_std).logp_entropy(params, actions)
    old_logp = logp + 0.4 * torch.randn(B, generator=g)        # ratios e^(+-0.4): many clipped
    adv = torch.randn(B, generator=g)
    old_value = value + 0.5 * torch.randn(B, generator=g)      # value changes past clip_coef
    returns = value + torch.randn(B, generator=g)
    return obs, actions, old_logp, adv, old_value, returns


def _autograd(model, cfg, batch):
    obs, actions, old_logp, adv, old_value, returns = batch
    for p in model.parameters():
        p.grad = None
    params, value = model.split(model(obs))
    logp, entropy = Policy(model.continuous, model.head.log_std).logp_entropy(params, actions)
    loss, stats = ppo_loss(logp, old_logp, adv, value, old_value, returns, entropy, cfg)
    loss.backward()
    return loss.item(), stats, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("clip_vloss", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("actor_critic", [ActorCritic, SeparateActorCritic])
def test_manual_gradients_equal_autograd(space, clip_vloss, activation, actor_critic):
    obs_dim, action_space = SPACES[space]
    torch.manual_seed(0)
    model = actor_critic(obs_dim, action_space, hidden_sizes=(32, 16), activation=activation,
                         log_std_init=-0.5)
    cfg = Config(clip_vloss=clip_vloss, ent_coef=0.05, vf_coef=0.7, clip_coef=0.2)
    batch = _batch(model, obs_dim, 256, seed=1)
    loss, stats, grads = _autograd(model, cfg, batch)
    assert 0.05 < stats["clipfrac"] < 0.95                 # both branches of the clip are taken

    manual = manual_gradients(model, cfg)
    assert manual is not None
    for p in model.parameters():
        p.grad = torch.full_like(p, float("nan"))           # every gradient must be written
    manual_loss, manual_stats = manual.forward_backward(*batch, with_stats=True)
    assert manual_loss == pytest.approx(loss, rel=1e-5, abs=1e-6)
    assert manual_stats.keys() == stats.keys()
    for key in stats:
        assert manual_stats[key] == pytest.approx(stats[key], rel=1e-5, abs=1e-6), key
    for (name, p), expected in zip(model.named_parameters(), grads):
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-6, msg=name)
    assert manual.forward_backward(*batch, with_stats=False)[1] == {}


def test_other_models_and_pipelines_keep_autograd():
    obs_dim, action_space = SPACES["discrete"]
    model = ActorCritic(obs_dim, action_space)
    assert manual_gradients(model, Config()) is not None
    assert manual_gradients(model, Config(pipeline_stages=2)) is None
    assert manual_gradients(model, Config(sync_mode="overlap")) is None   # its hooks need autograd
    model[0][1] = torch.nn.ELU()                            # a layer the derivation does not cover
    assert manual_gradients(model, Config()) is None
    assert manual_gradients(torch.nn.Sequential(torch.nn.Linear(4, 3)), Config()) is None
    separate = SeparateActorCritic(obs_dim, action_space)
    assert manual_gradients(separate, Config()) is not None
    separate.critic[1][1] = torch.nn.ELU()
    assert manual_gradients(separate, Config()) is None


@pytest.mark.parametrize("n", [1, 3, 8, 13])   # 13 > rows: empty minibatches too
def test_minibatches_of_an_epoch_are_the_rows_of_its_order(n):
    """The hand-written path gathers the batch once an epoch and slices it; every minibatch
    holds the rows of the order's part, in that order, as the per-minibatch gather of the
    autograd path does (the whole batch unshuffled when there is one: the mean is the same)."""
    g = torch.Generator().manual_seed(0)
    batch = Batch(*(torch.randn(10, *shape, generator=g) for shape in
                    ((3,), (2,), (), (), (), ())))
    order = np.random.default_rng(1).permutation(10)
    manual = list(ManualGradients.minibatches(batch, order, n))
    indexed = list(AutogradGradients.minibatches(batch, order, n))
    assert len(manual) == len(indexed) == n
    for (part, rows, size), (whole, index, size_i) in zip(manual, indexed):
        assert size == size_i == len(index)
        for column, expected in zip(part.columns(), whole.columns()):
            if n == 1:
                assert torch.equal(column[rows], expected)
            else:
                assert torch.equal(column[rows], expected[torch.from_numpy(index)])
