"""GAE and the clipped PPO loss against hand computations."""
import numpy as np
import pytest
import torch

from mpirl.algos.ppo import compute_gae, ppo_loss
from mpirl.config import Config


def test_gae_matches_hand_computed_example():
    # One env, 3 steps: the episode terminates at step 1; step 2 starts a new episode.
    gamma, lam = 0.9, 0.5
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.array([[0.5], [1.0], [9.0], [2.0]])   # values[3] bootstraps after the rollout
    terminated = np.array([[0.0], [1.0], [0.0]])
    ended = terminated.copy()
    adv = compute_gae(rewards, values, terminated, ended, gamma, lam)
    d2 = 3.0 + 0.9 * 2.0 - 9.0                 # -4.2
    d1 = 2.0 - 1.0                             # terminal: no bootstrap, no flow from step 2
    d0 = 1.0 + 0.9 * 1.0 - 0.5                 # 1.4
    np.testing.assert_allclose(adv[:, 0], [d0 + 0.45 * d1, d1, d2])


def test_gae_truncation_bootstraps_but_does_not_flow_back():
    gamma, lam = 0.5, 1.0
    rewards = np.array([[1.0], [0.0]])
    values = np.array([[0.0], [4.0], [8.0]])   # values[1]: value of the final observation
    terminated = np.zeros((2, 1))
    ended = np.array([[1.0], [0.0]])           # step 0 was truncated by a time limit
    adv = compute_gae(rewards, values, terminated, ended, gamma, lam)
    assert adv[0, 0] == pytest.approx(1.0 + 0.5 * 4.0 - 0.0)   # bootstrap, nothing from step 1
    assert adv[1, 0] == pytest.approx(0.0 + 0.5 * 8.0 - 4.0)


def test_gae_with_lambda_one_and_no_ends_is_discounted_return_minus_value():
    rng = np.random.default_rng(0)
    T, gamma = 6, 0.97
    rewards = rng.normal(size=(T, 3))
    values = rng.normal(size=(T + 1, 3))
    zeros = np.zeros((T, 3))
    adv = compute_gae(rewards, values, zeros, zeros, gamma, 1.0)
    for t in range(T):
        ret = sum(gamma ** (k - t) * rewards[k] for k in range(t, T)) + gamma ** (T - t) * values[T]
        np.testing.assert_allclose(adv[t], ret - values[t], rtol=1e-10)


def test_clipped_surrogate_loss_matches_hand_computation():
    cfg = Config(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01)
    old_logp = torch.zeros(3)
    logp = torch.log(torch.tensor([1.5, 0.5, 1.1]))         # ratios 1.5, 0.5, 1.1
    adv = torch.tensor([1.0, 1.0, -2.0])
    value, old_value, returns = torch.tensor([1.0, 2.0, 0.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])
    entropy = torch.tensor([0.6, 0.6, 0.6])
    loss, stats = ppo_loss(logp, old_logp, adv, value, old_value, returns, entropy, cfg)
    # per sample max(-A r, -A clip(r)): -min(1.5,1.2)=-1.2, -min(0.5,0.8)=-0.5, max(2.2, 2.2)=2.2
    pg = (-1.2 - 0.5 + 2.2) / 3
    v = 0.5 * (1 + 4 + 1) / 3
    assert stats["policy_loss"] == pytest.approx(pg)
    assert stats["value_loss"] == pytest.approx(v)
    assert loss.item() == pytest.approx(pg - 0.01 * 0.6 + 0.5 * v, rel=1e-6)
    assert stats["clipfrac"] == pytest.approx(2 / 3)


def test_clipped_value_loss_takes_the_larger_error():
    cfg = Config(clip_coef=0.2, clip_vloss=True, vf_coef=1.0, ent_coef=0.0)
    z = torch.zeros(1)
    _, stats = ppo_loss(z, z, z, torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0]),
                        z, cfg)
    # unclipped error 0; clipped value 0.2 -> error 0.64; the max is taken
    assert stats["value_loss"] == pytest.approx(0.5 * 0.64)
