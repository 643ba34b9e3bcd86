"""SAC and TD3 pieces against references written from the papers, not from the implementation:
SAC's losses and every gradient (per-sample loops in float64, the Gaussian's density from
torch.distributions), the tanh-squashed log-probability, TD3's smoothed and clipped targets on
hand-computed numbers, FlatAdam's separately stepped parts against separate torch Adams, the
spread of exploration noise over ranks, the replay snapshot's round trip, and the checks and
defaults of the sac / td3 options."""
import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal

from mpirl.algos.offpolicy import Transitions, rank_noise_scale
from mpirl.algos.sac import sac_losses
from mpirl.algos.td3 import smoothed_target_actions, td3_losses, td3_target
from mpirl.checks import problems
from mpirl.comm import World
from mpirl.comm.collectives import FlatGradients
from mpirl.config import parse_args
from mpirl.models.continuous import (DeterministicActor, OffPolicyAgent, SquashedGaussianActor,
                                     TwinQ)
from mpirl.optim import FlatAdam, module_parts
from mpirl.replay.buffer import ReplayBuffer, transition_dtype
from mpirl.replay.nstep import NStepAdder
from mpirl.replay.sharing import LocalReplay, make_shared_replay
from mpirl.replay.snapshot import has_replay, load_replay, save_replay

# A Box whose bounds are not symmetric around 0, so that the action scale (1, 2) and bias (0, 2)
# both matter.
LOW, HIGH = np.array([-1.0, 0.0], np.float32), np.array([1.0, 4.0], np.float32)
SPACE = gym.spaces.Box(LOW, HIGH, dtype=np.float32)
SCALE = (HIGH.astype(np.float64) - LOW) / 2       # (1, 2)
BIAS = (HIGH.astype(np.float64) + LOW) / 2        # (0, 2)
OBS_DIM, ACT_DIM, B = 3, 2, 5
F64 = torch.float64


# -- reference networks, evaluated one sample at a time ------------------------------------------
def _linears(seq):
    return [m for m in seq if isinstance(m, torch.nn.Linear)]


def ref_mlp(layers, x):
    """ReLU after every layer but the last (CleanRL's fc1, fc2, head)."""
    for i, layer in enumerate(layers):
        x = layer.weight @ x + layer.bias
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x


def ref_q(mlp_seq, s, a):
    return ref_mlp(_linears(mlp_seq), torch.cat([s, a]))[0]


def ref_gaussian(actor: SquashedGaussianActor, s):
    """CleanRL's actor: relu(fc1), relu(fc2), mean head, log-std head squashed by tanh into
    [LOG_STD_MIN, LOG_STD_MAX] = [-5, 2]."""
    h = s
    for layer in _linears(actor.trunk):
        h = torch.relu(layer.weight @ h + layer.bias)
    mean = actor.mean.weight @ h + actor.mean.bias
    t = torch.tanh(actor.log_std.weight @ h + actor.log_std.bias)
    log_std = -5.0 + (2.0 - (-5.0)) * (t + 1.0) / 2.0
    return mean, log_std


def ref_squashed_sample(actor, s, eps):
    """Reparameterised u = mu + sigma eps, a = bias + scale tanh(u), and
    log pi(a|s) = log N(u; mu, sigma) - sum_i log(scale_i (1 - tanh(u_i)^2) + 1e-6)."""
    mean, log_std = ref_gaussian(actor, s)
    std = log_std.exp()
    u = mean + std * eps
    scale, bias = torch.tensor(SCALE, dtype=F64), torch.tensor(BIAS, dtype=F64)
    a = bias + scale * torch.tanh(u)
    log_prob = Normal(mean, std).log_prob(u).sum()
    for i in range(u.shape[0]):
        log_prob = log_prob - torch.log(scale[i] * (1 - torch.tanh(u[i]) ** 2) + 1e-6)
    return a, log_prob


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, OBS_DIM, generator=g, dtype=F64)
    next_obs = torch.randn(B, OBS_DIM, generator=g, dtype=F64)
    actions = torch.tensor(BIAS) + torch.tensor(SCALE) * (2 * torch.rand(B, ACT_DIM, generator=g,
                                                                         dtype=F64) - 1)
    rewards = torch.randn(B, generator=g, dtype=F64)
    dones = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0], dtype=F64)
    discounts = torch.tensor([0.99, 0.99, 0.99 ** 3, 0.9, 0.5], dtype=F64)
    weights = torch.tensor([1.0, 0.5, 0.25, 0.8, 1.0], dtype=F64)
    return Transitions(obs, actions, rewards, next_obs, dones, discounts, weights)


def _perturbed(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _sac_setup(autotune=True):
    torch.manual_seed(0)
    agent = OffPolicyAgent("sac", OBS_DIM, SPACE, hidden_sizes=(8, 8), autotune=autotune,
                           alpha=0.2).double()
    if autotune:
        with torch.no_grad():
            agent.temperature.log_alpha.fill_(math.log(0.3))
    targets = {"target_critic": _perturbed(copy.deepcopy(agent.critic), 1)}
    return agent, targets


def _sac_reference(agent, targets, batch, seed, update_actor=True):
    """The three SAC losses, from the paper, one sample at a time, on copies of the networks;
    returns (losses, td_abs, {part: gradients of that part's own loss})."""
    ref = copy.deepcopy(agent)
    target_critic = copy.deepcopy(targets["target_critic"])
    g = torch.Generator().manual_seed(seed)
    eps_next = torch.randn((B, ACT_DIM), generator=g, dtype=F64)     # drawn first: s'
    eps_now = torch.randn((B, ACT_DIM), generator=g, dtype=F64)      # then s (actor step)
    autotune = hasattr(ref, "temperature")
    alpha_const = (float(ref.temperature.log_alpha.detach().exp()) if autotune
                   else float(ref.fixed_alpha))

    ys, critic_terms, td = [], [], []
    for i in range(B):
        with torch.no_grad():
            a2, logp2 = ref_squashed_sample(ref.actor, batch.next_obs[i], eps_next[i])
            q_next = min(ref_q(target_critic.q1, batch.next_obs[i], a2),
                         ref_q(target_critic.q2, batch.next_obs[i], a2))
            y = batch.rewards[i] + batch.discounts[i] * (1 - batch.dones[i]) * (
                q_next - alpha_const * logp2)
        ys.append(y)
        q1 = ref_q(ref.critic.q1, batch.obs[i], batch.actions[i])
        q2 = ref_q(ref.critic.q2, batch.obs[i], batch.actions[i])
        critic_terms.append(batch.weights[i] * ((q1 - y) ** 2 + (q2 - y) ** 2))
        td.append(float((abs(q1 - y) + abs(q2 - y)).detach()) / 2)
    critic_loss = sum(critic_terms) / B
    critic_params = list(ref.critic.parameters())
    grads = {"critic": torch.autograd.grad(critic_loss, critic_params)}
    losses = {"critic": float(critic_loss.detach())}
    if update_actor:
        actor_terms, logps = [], []
        for i in range(B):
            a, logp = ref_squashed_sample(ref.actor, batch.obs[i], eps_now[i])
            q_pi = torch.min(ref_q(ref.critic.q1, batch.obs[i], a),
                             ref_q(ref.critic.q2, batch.obs[i], a))
            actor_terms.append(alpha_const * logp - q_pi)
            logps.append(logp)
        actor_loss = sum(actor_terms) / B
        grads["actor"] = torch.autograd.grad(actor_loss, list(ref.actor.parameters()))
        losses["actor"] = float(actor_loss.detach())
        losses["entropy"] = -float(sum(logps).detach() / B)
        if autotune:
            target_entropy = -float(ACT_DIM)
            log_alpha = ref.temperature.log_alpha
            alpha_loss = sum(-torch.exp(log_alpha[0]) * (float(lp.detach()) + target_entropy)
                             for lp in logps) / B
            grads["temperature"] = torch.autograd.grad(alpha_loss, [log_alpha])
            losses["temperature"] = float(alpha_loss.detach())
    return losses, np.array(td), grads


def _assert_grads(params, expected):
    params = list(params)
    assert len(params) == len(expected)
    for p, e in zip(params, expected):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, e, rtol=1e-6, atol=1e-6)


# -- SAC -------------------------------------------------------------------------------------------
def test_sac_losses_and_every_gradient_match_the_paper():
    agent, targets = _sac_setup()
    batch = _batch()
    losses, td_ref, grads = _sac_reference(agent, targets, batch, seed=123)

    loss, td_abs, stats = sac_losses(agent, targets, batch, True,
                                     torch.Generator().manual_seed(123))
    agent.zero_grad()
    loss.backward()

    total = losses["critic"] + losses["actor"] + losses["temperature"]
    assert loss.item() == pytest.approx(total, rel=1e-6, abs=1e-6)
    assert stats["critic_loss"] == pytest.approx(losses["critic"], rel=1e-6, abs=1e-6)
    assert stats["actor_loss"] == pytest.approx(losses["actor"], rel=1e-6, abs=1e-6)
    assert stats["entropy"] == pytest.approx(losses["entropy"], rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(td_abs.numpy(), td_ref, rtol=1e-6, atol=1e-6)
    # the critic's gradient is the critic loss's alone: the actor's loss leaves it untouched
    _assert_grads(agent.critic.parameters(), grads["critic"])
    _assert_grads(agent.actor.parameters(), grads["actor"])
    _assert_grads([agent.temperature.log_alpha], grads["temperature"])
    # the temperature's gradient has a closed form: -alpha mean(logp + target_entropy)
    assert agent.temperature.log_alpha.grad.item() == pytest.approx(
        -0.3 * (-losses["entropy"] - ACT_DIM), rel=1e-6)
    assert all(p.grad is None for p in targets["target_critic"].parameters())
    assert all(p.requires_grad for p in agent.critic.parameters())   # held still, then released


def test_sac_with_a_fixed_alpha_uses_it_in_target_and_actor_loss():
    agent, targets = _sac_setup(autotune=False)
    assert not any("temperature" in n for n, _ in agent.named_parameters())
    batch = _batch(1)
    losses, td_ref, grads = _sac_reference(agent, targets, batch, seed=5)
    loss, td_abs, _ = sac_losses(agent, targets, batch, True, torch.Generator().manual_seed(5))
    agent.zero_grad()
    loss.backward()
    assert loss.item() == pytest.approx(losses["critic"] + losses["actor"], rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(td_abs.numpy(), td_ref, rtol=1e-6, atol=1e-6)
    _assert_grads(agent.critic.parameters(), grads["critic"])
    _assert_grads(agent.actor.parameters(), grads["actor"])


def test_sac_critic_step_alone_moves_only_the_critic():
    agent, targets = _sac_setup()
    batch = _batch(2)
    losses, td_ref, grads = _sac_reference(agent, targets, batch, seed=9, update_actor=False)
    loss, td_abs, stats = sac_losses(agent, targets, batch, False, torch.Generator().manual_seed(9))
    agent.zero_grad()
    loss.backward()
    assert loss.item() == pytest.approx(losses["critic"], rel=1e-6, abs=1e-6)
    assert "actor_loss" not in stats
    np.testing.assert_allclose(td_abs.numpy(), td_ref, rtol=1e-6, atol=1e-6)
    _assert_grads(agent.critic.parameters(), grads["critic"])
    for p in list(agent.actor.parameters()) + [agent.temperature.log_alpha]:
        assert p.grad is None or not p.grad.any()


def _constant_gaussian_actor(mu, raw_log_std):
    """An actor whose mean and (pre-squash) log-std head put out constants."""
    actor = SquashedGaussianActor(OBS_DIM, SPACE, hidden_sizes=(4, 4)).double()
    with torch.no_grad():
        for layer in (actor.mean, actor.log_std):
            layer.weight.zero_()
        actor.mean.bias.copy_(torch.tensor(mu, dtype=F64))
        actor.log_std.bias.copy_(torch.tensor(raw_log_std, dtype=F64))
    return actor


def test_squashed_log_probability_against_its_closed_form_and_the_change_of_variables():
    mu, raw = [0.3, -0.7], [0.4, -1.2]
    actor = _constant_gaussian_actor(mu, raw)
    obs = torch.zeros(1, OBS_DIM, dtype=F64)
    with torch.no_grad():
        action, log_prob = actor(obs, torch.Generator().manual_seed(42))
    eps = torch.randn((1, ACT_DIM), generator=torch.Generator().manual_seed(42), dtype=F64)[0]

    expected, direct = 0.0, 0.0
    for i in range(ACT_DIM):
        log_std = -5.0 + 3.5 * (math.tanh(raw[i]) + 1.0)
        sigma = math.exp(log_std)
        u = mu[i] + sigma * float(eps[i])
        assert float(action[0, i]) == pytest.approx(BIAS[i] + SCALE[i] * math.tanh(u), rel=1e-12)
        gauss = -0.5 * ((u - mu[i]) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)
        dadu = SCALE[i] * (1.0 - math.tanh(u) ** 2)
        expected += gauss - math.log(dadu + 1e-6)
        direct += gauss - math.log(dadu)
    assert float(log_prob[0]) == pytest.approx(expected, rel=1e-9, abs=1e-9)

    # the density of a itself, by the change of variables u = atanh((a - bias) / scale) with the
    # Jacobian from autograd: what the 1e-6 approximates
    a = action[0].detach().clone().requires_grad_(True)
    u = torch.atanh((a - torch.tensor(BIAS)) / torch.tensor(SCALE))
    mean, log_std = ref_gaussian(actor, obs[0])
    jac = [torch.autograd.grad(u[i], a, retain_graph=True)[0][i] for i in range(ACT_DIM)]
    density = (Normal(mean, log_std.exp()).log_prob(u).sum()
               + sum(torch.log(j) for j in jac)).detach()
    assert float(density) == pytest.approx(direct, rel=1e-9)
    assert float(log_prob[0]) == pytest.approx(float(density), abs=1e-4)


def test_explore_with_scale_one_is_the_policy_sample_and_mode_is_the_squashed_mean():
    torch.manual_seed(3)
    actor = SquashedGaussianActor(OBS_DIM, SPACE, hidden_sizes=(8, 8)).double()
    obs = torch.randn(4, OBS_DIM, dtype=F64)
    with torch.no_grad():
        sample, _ = actor(obs, torch.Generator().manual_seed(1))
        explored = actor.explore(obs, torch.Generator().manual_seed(1), 1.0)
        mode = actor.mode(obs)
        wider = actor.explore(obs, torch.Generator().manual_seed(1), 2.0)
    torch.testing.assert_close(explored, sample)
    eps = torch.randn((4, ACT_DIM), generator=torch.Generator().manual_seed(1), dtype=F64)
    for i in range(4):
        mean, log_std = ref_gaussian(actor, obs[i])
        bias, scale = torch.tensor(BIAS), torch.tensor(SCALE)
        torch.testing.assert_close(mode[i], bias + scale * torch.tanh(mean))
        torch.testing.assert_close(wider[i], bias + scale * torch.tanh(mean + 2 * log_std.exp()
                                                                      * eps[i]))
    assert (wider >= torch.tensor(LOW, dtype=F64)).all() and (wider <= torch.tensor(HIGH,
                                                                                   dtype=F64)).all()


# -- TD3 -------------------------------------------------------------------------------------------
def _constant_actor(raw):
    """A deterministic actor whose output layer puts out ``raw`` before the tanh, whatever obs."""
    actor = DeterministicActor(OBS_DIM, SPACE, hidden_sizes=(4, 4)).double()
    with torch.no_grad():
        last = _linears(actor.net)[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor(raw, dtype=F64))
    return actor


def test_td3_smoothed_target_actions_clip_the_noise_and_the_action():
    raw = [math.atanh(0.9), math.atanh(-0.9)]
    target_actor = _constant_actor(raw)            # mu'(s') = (0.9, 2 - 1.8) = (0.9, 0.2)
    mu = BIAS + SCALE * np.tanh(raw)
    np.testing.assert_allclose(mu, [0.9, 0.2], rtol=1e-12)
    noise = torch.tensor([[3.0, -0.5],             # 0.6 -> clipped 0.5; -0.1 as is
                          [-3.0, -4.0],            # both clipped to -0.5
                          [0.25, 1.0],             # as is: 0.05, 0.2
                          [0.5, 2.0],              # 0.1, 0.4
                          [-0.5, 5.0]], dtype=F64)  # -0.1, 1.0 -> 0.5
    policy_noise, noise_clip = 0.2, 0.5
    expected = np.zeros((B, ACT_DIM))
    for i in range(B):
        for j in range(ACT_DIM):
            eps = min(max(policy_noise * float(noise[i, j]), -noise_clip), noise_clip)
            expected[i, j] = min(max(mu[j] + eps * SCALE[j], LOW[j]), HIGH[j])
    # the numbers: some beyond the bounds before clipping, on either side
    np.testing.assert_allclose(expected, [[1.0, 0.0], [0.4, 0.0], [0.95, 0.6], [1.0, 1.0],
                                          [0.8, 1.2]], rtol=1e-12, atol=1e-12)
    next_obs = torch.randn(B, OBS_DIM, dtype=F64)
    got = smoothed_target_actions(target_actor, next_obs, noise, policy_noise, noise_clip)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12, atol=1e-12)

    torch.manual_seed(4)
    critic = TwinQ(OBS_DIM, ACT_DIM, (8, 8)).double()
    batch = _batch(3)
    batch.next_obs = next_obs
    y = td3_target(target_actor, critic, batch, noise, policy_noise, noise_clip)
    for i in range(B):
        a = torch.tensor(expected[i])
        with torch.no_grad():
            q = min(float(ref_q(critic.q1, next_obs[i], a)),
                    float(ref_q(critic.q2, next_obs[i], a)))
        want = float(batch.rewards[i]) + float(batch.discounts[i]) * (1 - float(batch.dones[i])) * q
        assert float(y[i]) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert not y.requires_grad


def _td3_setup():
    torch.manual_seed(1)
    agent = OffPolicyAgent("td3", OBS_DIM, SPACE, hidden_sizes=(8, 8)).double()
    targets = {"target_critic": _perturbed(copy.deepcopy(agent.critic), 2),
               "target_actor": _perturbed(copy.deepcopy(agent.actor), 3)}
    return agent, targets


def test_td3_losses_gradients_reach_the_actor_only_through_its_own_loss():
    agent, targets = _td3_setup()
    assert agent.parts() == ["critic", "actor"]
    batch = _batch(4)
    policy_noise, noise_clip = 0.2, 0.5
    ref = copy.deepcopy(agent)

    # reference: the smoothing noise is the generator's first draw, of the actions' shape
    noise = torch.randn((B, ACT_DIM), generator=torch.Generator().manual_seed(11), dtype=F64)
    tmu = targets["target_actor"]
    critic_terms, td = [], []
    for i in range(B):
        with torch.no_grad():
            raw = ref_mlp(_linears(tmu.net), batch.next_obs[i])
            a2 = torch.tensor(BIAS) + torch.tensor(SCALE) * torch.tanh(raw)
            eps = torch.clamp(policy_noise * noise[i], -noise_clip, noise_clip)
            a2 = torch.minimum(torch.maximum(a2 + eps * torch.tensor(SCALE),
                                             torch.tensor(LOW, dtype=F64)),
                               torch.tensor(HIGH, dtype=F64))
            q_next = min(ref_q(targets["target_critic"].q1, batch.next_obs[i], a2),
                         ref_q(targets["target_critic"].q2, batch.next_obs[i], a2))
            y = batch.rewards[i] + batch.discounts[i] * (1 - batch.dones[i]) * q_next
        q1 = ref_q(ref.critic.q1, batch.obs[i], batch.actions[i])
        q2 = ref_q(ref.critic.q2, batch.obs[i], batch.actions[i])
        critic_terms.append(batch.weights[i] * ((q1 - y) ** 2 + (q2 - y) ** 2))
        td.append(float((abs(q1 - y) + abs(q2 - y)).detach()) / 2)
    critic_loss = sum(critic_terms) / B
    critic_grads = torch.autograd.grad(critic_loss, list(ref.critic.parameters()))
    actor_terms = []
    for i in range(B):
        a = torch.tensor(BIAS) + torch.tensor(SCALE) * torch.tanh(
            ref_mlp(_linears(ref.actor.net), batch.obs[i]))
        actor_terms.append(-ref_q(ref.critic.q1, batch.obs[i], a))
    actor_loss = sum(actor_terms) / B
    actor_grads = torch.autograd.grad(actor_loss, list(ref.actor.parameters()))
    critic_loss, actor_loss = critic_loss.detach(), actor_loss.detach()

    loss, td_abs, stats = td3_losses(agent, targets, batch, True,
                                     torch.Generator().manual_seed(11), policy_noise, noise_clip)
    agent.zero_grad()
    loss.backward()
    assert loss.item() == pytest.approx(float(critic_loss + actor_loss), rel=1e-6, abs=1e-6)
    assert stats["actor_loss"] == pytest.approx(float(actor_loss), rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(td_abs.numpy(), td, rtol=1e-6, atol=1e-6)
    _assert_grads(agent.critic.parameters(), critic_grads)
    _assert_grads(agent.actor.parameters(), actor_grads)
    for module in targets.values():
        assert all(p.grad is None for p in module.parameters())

    # a critic-only step: the same critic gradient, none for the actor
    agent.zero_grad()
    loss, _, stats = td3_losses(agent, targets, batch, False, torch.Generator().manual_seed(11),
                                policy_noise, noise_clip)
    loss.backward()
    assert loss.item() == pytest.approx(float(critic_loss), rel=1e-6, abs=1e-6)
    _assert_grads(agent.critic.parameters(), critic_grads)
    assert all(p.grad is None or not p.grad.any() for p in agent.actor.parameters())


# -- FlatAdam's parts ------------------------------------------------------------------------------
class TwoParts(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.critic = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 1))
        self.actor = torch.nn.Linear(3, 2)


def test_flat_adam_parts_step_like_separate_adams_with_a_delayed_actor():
    torch.manual_seed(0)
    model = TwoParts().double()
    reference = copy.deepcopy(model)
    grads = FlatGradients(model.parameters(), World())
    parts = module_parts(model, ["critic", "actor"])
    n_critic = sum(p.numel() for p in model.critic.parameters())
    n_actor = sum(p.numel() for p in model.actor.parameters())
    assert parts == {"critic": (0, n_critic), "actor": (n_critic, n_critic + n_actor)}
    opt = FlatAdam(grads, lr=1e-2, eps=1e-8, parts=parts)
    critic_opt = torch.optim.Adam(reference.critic.parameters(), lr=1e-2, eps=1e-8)
    actor_opt = torch.optim.Adam(reference.actor.parameters(), lr=1e-2, eps=1e-8)
    g = torch.Generator().manual_seed(7)
    for step in range(10):
        update_actor = step % 2 == 0
        actor_before = [p.detach().clone() for p in model.actor.parameters()]
        for p, q in zip(model.parameters(), reference.parameters()):
            noise = torch.randn(p.shape, generator=g, dtype=F64)
            p.grad.copy_(noise)           # into the flat buffer (a view)
            q.grad = noise.clone()
        opt.step(*(["critic", "actor"] if update_actor else ["critic"]))
        critic_opt.step()
        if update_actor:
            actor_opt.step()
        else:   # left out: not moved
            for p, b in zip(model.actor.parameters(), actor_before):
                assert torch.equal(p, b)
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    assert opt.step_count.tolist() == [10.0, 5.0]


def test_module_parts_refuses_a_parameter_outside_the_named_parts():
    model = TwoParts()
    model.stray = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="none of"):
        module_parts(model, ["critic", "actor"])
    with pytest.raises(ValueError, match="none of"):
        module_parts(TwoParts(), ["critic"])


# -- exploration over ranks ------------------------------------------------------------------------
def test_rank_noise_scale_spreads_geometrically_from_one_over_spread_to_spread():
    assert rank_noise_scale(4.0, 0, 1) == 1.0
    assert rank_noise_scale(1.0, 0, 5) == 1.0 and rank_noise_scale(1.0, 4, 5) == 1.0
    assert rank_noise_scale(4.0, 0, 5) == pytest.approx(0.25)
    assert rank_noise_scale(4.0, 4, 5) == pytest.approx(4.0)
    assert rank_noise_scale(4.0, 2, 5) == pytest.approx(1.0)
    scales = [rank_noise_scale(3.0, i, 7) for i in range(7)]
    ratios = np.array(scales[1:]) / np.array(scales[:-1])
    np.testing.assert_allclose(ratios, [3.0 ** (2 / 6)] * 6, rtol=1e-12)
    assert rank_noise_scale(2.0, 0, 2) == pytest.approx(0.5)
    assert rank_noise_scale(2.0, 1, 2) == pytest.approx(2.0)


# -- the replay snapshot ---------------------------------------------------------------------------
BOX_DTYPE = transition_dtype((3,), action_shape=(2,))


class FakeWorld:
    """What a SharedReplay asks of its world, without MPI."""

    def __init__(self, rank=0, size=1):
        self.rank, self.size, self.world_rank = rank, size, rank

    def rank_seed(self, seed, stream=0):
        return int(np.random.SeedSequence([seed, self.rank, stream]).generate_state(1)[0])


def _steps(rng, n_envs=2):
    obs = rng.normal(size=(n_envs, 3)).astype(np.float32)
    action = rng.uniform(-1, 1, size=(n_envs, 2)).astype(np.float32)
    reward = rng.normal(size=n_envs).astype(np.float32)
    next_obs = rng.normal(size=(n_envs, 3)).astype(np.float32)
    terminated = rng.random(n_envs) < 0.1
    truncated = rng.random(n_envs) < 0.05
    return obs, action, reward, next_obs, terminated, truncated


def _filled_replay(prioritized, capacity, steps, seed=7):
    memory = ReplayBuffer(capacity, BOX_DTYPE, prioritized=prioritized, alpha=0.6)
    replay = make_shared_replay("none", FakeWorld(), memory, seed)
    assert isinstance(replay, LocalReplay)
    adder = NStepAdder(2, 3, 0.9, BOX_DTYPE)
    rng = np.random.default_rng(0)
    for t in range(steps):
        replay.add(adder.add(*_steps(rng)))
        if t >= 10 and t % 3 == 0:
            batch = replay.sample(8, 0.4)
            replay.update_priorities(batch, rng.exponential(size=8))
    return replay, adder


def _fresh(prioritized, capacity):
    memory = ReplayBuffer(capacity, BOX_DTYPE, prioritized=prioritized, alpha=0.6)
    return LocalReplay(FakeWorld(), memory, seed=99), NStepAdder(2, 3, 0.9, BOX_DTYPE)


def _same_records(a, b):
    """Field by field (the aligned dtype's padding bytes carry no data)."""
    return a.dtype == b.dtype and a.shape == b.shape and all(
        np.array_equal(a[name], b[name]) for name in a.dtype.names)


def _assert_same_memory(a, b):
    ma, mb = a.memory, b.memory
    assert (ma.next, ma.size, ma.added, ma.max_priority) == (mb.next, mb.size, mb.added,
                                                             mb.max_priority)
    assert _same_records(ma.storage, mb.storage)
    if ma.prioritized:
        differ = np.flatnonzero(ma.tree.tree != mb.tree.tree)
        assert differ.size == 0, (
            f"sum-trees differ at {differ.size} node(s) {differ[:5].tolist()} (leaves from "
            f"{ma.tree.leaf0}), by up to {np.abs(ma.tree.tree - mb.tree.tree).max():.3g}")
        assert ma.tree.total == mb.tree.total


@pytest.mark.usefixtures("kernel_backend")
@pytest.mark.parametrize("prioritized", [True, False])
@pytest.mark.parametrize("capacity", [40, 500])     # wrapped around, and not yet full
def test_replay_snapshot_round_trip_continues_identically(tmp_path, prioritized, capacity):
    replay, adder = _filled_replay(prioritized, capacity, steps=60)
    assert len(replay.memory) == min(capacity, replay.memory.added)
    assert adder.pending.any()                      # n-step windows still waiting
    save_replay(str(tmp_path), 0, 17, replay, adder)
    assert has_replay(str(tmp_path), 0, 17)
    assert not has_replay(str(tmp_path), 0, 18)     # another checkpoint's update
    assert not has_replay(str(tmp_path), 1, 17)     # no file for that rank
    assert not has_replay(str(tmp_path / "elsewhere"), 0, 17)

    other, other_adder = _fresh(prioritized, capacity)
    load_replay(str(tmp_path), 0, other, other_adder)
    _assert_same_memory(replay, other)
    assert np.array_equal(adder.pending, other_adder.pending)
    assert _same_records(adder.history, other_adder.history)
    assert other.generator_states() == replay.generator_states()
    assert other.memory.storage.dtype == BOX_DTYPE

    # both go on alike: the same draws, the same records out of the adders
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    rng_p = np.random.default_rng(6)
    for _ in range(6):
        ba, bb = replay.sample(8, 0.4), other.sample(8, 0.4)
        assert np.array_equal(ba.route[0], bb.route[0])
        assert _same_records(ba.records, bb.records)
        assert np.array_equal(ba.weights, bb.weights)
        priorities = rng_p.exponential(size=8)
        replay.update_priorities(ba, priorities)
        other.update_priorities(bb, priorities)
        step_a, step_b = _steps(rng_a), _steps(rng_b)
        out_a, out_b = adder.add(*step_a), other_adder.add(*step_b)
        assert out_a.size and _same_records(out_a, out_b)
        replay.add(out_a)
        other.add(out_b)
    _assert_same_memory(replay, other)


@pytest.mark.usefixtures("kernel_backend")
def test_replay_snapshot_of_a_large_prioritized_memory_keeps_its_sumtree_bit_for_bit(tmp_path):
    """A tree with stored levels below the cumsum'd top (capacity > 1024), saved part-way between
    two of its exact rebuilds: the loaded tree must go on as the saved one does (a resumed run
    goes on bit for bit), through the rebuilds that follow."""
    capacity = 4096
    memory = ReplayBuffer(capacity, BOX_DTYPE, prioritized=True, alpha=0.6)
    replay = LocalReplay(FakeWorld(), memory, seed=3)
    adder = NStepAdder(2, 3, 0.9, BOX_DTYPE)
    rng = np.random.default_rng(0)
    records = np.zeros(3000, BOX_DTYPE)
    records["reward"] = rng.normal(size=3000)
    replay.add(records)
    for _ in range(20):
        batch = replay.sample(64, 0.4)
        replay.update_priorities(batch, rng.exponential(size=64) * 10)
    save_replay(str(tmp_path), 0, 1, replay, adder)
    other, other_adder = _fresh(True, capacity)
    load_replay(str(tmp_path), 0, other, other_adder)
    _assert_same_memory(replay, other)
    assert 0 < memory.tree._writes_since_rebuild < capacity   # saved between two rebuilds
    for _ in range(2 * capacity // 64):                         # past the next rebuilds of both
        ba, bb = replay.sample(64, 0.4), other.sample(64, 0.4)
        assert np.array_equal(ba.route[0], bb.route[0])
        priorities = rng.exponential(size=64) * 10
        replay.update_priorities(ba, priorities)
        other.update_priorities(bb, priorities)
        _assert_same_memory(replay, other)


# -- checks and defaults ---------------------------------------------------------------------------
def _problems(argv, n_ranks=1):
    return problems(parse_args(argv, n_ranks), n_ranks)


def _one(found, part):
    assert sum(part in p for p in found) == 1, (part, found)


def test_sac_needs_a_box_action_space():
    _one(_problems(["--algo", "sac", "--env-id", "CartPole-v1"]),
         "CartPole-v1 has a Discrete action space; --algo sac needs Box")
    _one(_problems(["--algo", "td3", "--env-id", "CartPole-v1"]), "--algo td3 needs Box")


@pytest.mark.parametrize("argv, n_ranks, part", [
    (["--batch-size", "512", "--learning-starts", "300"], 1,
     "--batch-size 512 is larger than the 300 transitions"),
    (["--batch-size", "256"], 3, "--batch-size 256 (the global batch) must be a multiple of the 3"),
    (["--utd", "0"], 1, "--utd must be a finite number > 0"),
    (["--utd", "1e-4", "--learning-starts", "1000", "--total-timesteps", "2000"], 1,
     "--utd 0.0001 cannot be met"),
    (["--learning-starts", "5000", "--total-timesteps", "5000"], 1,
     "--learning-starts 5,000 is not below --total-timesteps 5,000"),
    (["--noise-spread", "0.5"], 1, "--noise-spread must be >= 1"),
    (["--policy-frequency", "0"], 1, "--policy-frequency must be >= 1"),
])
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_off_policy_bad_options_are_reported(algo, argv, n_ranks, part):
    _one(_problems(["--algo", algo, "--env-id", "Pendulum-v1"] + argv, n_ranks), part)


def test_sac_with_tasks_is_reported():
    found = _problems(["--algo", "sac", "--tasks", "Pendulum-v1,MountainCarContinuous-v0"], 2)
    _one(found, "--tasks is implemented for --algo ppo and dqn, not --algo sac")


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_a_good_off_policy_configuration_has_no_problem(algo):
    assert _problems(["--algo", algo, "--env-id", "Pendulum-v1"], 2) == []
    assert _problems(["--algo", algo, "--env-id", "Pendulum-v1"], 1) == []


def test_sac_and_td3_defaults_and_presets_apply():
    cfg = parse_args(["--algo", "sac", "--env-id", "Pendulum-v1"])
    assert cfg.batch_size == 256 and cfg.buffer_size == 1_000_000 and cfg.tau == 0.005
    assert cfg.normalize_obs is False and tuple(cfg.hidden_sizes) == (256, 256)
    assert cfg.preset == "Pendulum-v1" and cfg.learning_rate == 1e-3
    assert cfg.policy_frequency == 1 and cfg.autotune is True and cfg.num_envs == 1
    assert cfg.batch_size <= cfg.learning_starts
    none = parse_args(["--algo", "sac", "--env-id", "Pendulum-v1", "--preset", "none"])
    assert none.preset == "none" and none.learning_rate == 3e-4
    td3 = parse_args(["--algo", "td3", "--env-id", "Pendulum-v1"])
    assert td3.policy_frequency == 2 and td3.target_network_frequency == 2
    assert (td3.policy_noise, td3.noise_clip, td3.exploration_noise) == (0.2, 0.5, 0.1)
    assert td3.batch_size == 256 and td3.tau == 0.005
    # the command line still wins over the algorithm's defaults
    assert parse_args(["--algo", "sac", "--env-id", "Pendulum-v1", "--batch-size", "64"]
                      ).batch_size == 64
