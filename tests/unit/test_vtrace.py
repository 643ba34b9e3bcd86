"""V-trace against the paper's definition written out as a naive double sum, and against GAE's
lambda = 1 returns on policy."""
import numpy as np
import pytest
import torch

from mpirl.algos.ppo import compute_gae
from mpirl.algos.vtrace import vtrace


def naive_vtrace(mu_logp, pi_logp, rewards, values, bootstrap, terminated, ended, gamma,
                 rho_bar, c_bar):
    """Espeholt et al. (2018), eq. (1), for one env at a time, in float64:

        v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} k_i c_i) delta_t

    with delta_t = rho_t (r_t + g_t V(x_{t+1}) - V(x_t)), g_t the discount unless the episode
    terminated at t, k_t the discount unless it ended (terminated or truncated) at t; and the
    policy-gradient advantage rho_t (r_t + g_t q_{t+1} - V(x_t)), q_{t+1} = v_{t+1} inside an
    episode, V(x_{t+1}) after its end."""
    T, B = rewards.shape
    vs = np.zeros((T, B))
    adv = np.zeros((T, B))
    for b in range(B):
        V = list(values[:, b]) + [bootstrap[b]]
        ratio = [np.exp(pi_logp[t, b] - mu_logp[t, b]) for t in range(T)]
        rho = [min(rho_bar, x) for x in ratio]
        c = [min(c_bar, x) for x in ratio]
        g = [gamma * (1 - terminated[t, b]) for t in range(T)]
        k = [gamma * (1 - ended[t, b]) for t in range(T)]
        delta = [rho[t] * (rewards[t, b] + g[t] * V[t + 1] - V[t]) for t in range(T)]
        for s in range(T):
            total = V[s]
            for t in range(s, T):
                weight = 1.0
                for i in range(s, t):
                    weight *= k[i] * c[i]
                total += weight * delta[t]
            vs[s, b] = total
        for s in range(T):
            nxt = V[s + 1] if (ended[s, b] or s == T - 1) else vs[s + 1, b]
            adv[s, b] = rho[s] * (rewards[s, b] + g[s] * nxt - V[s])
    return vs, adv


def random_block(rng, T=12, B=5):
    mu = rng.normal(-1.0, 0.5, (T, B))
    pi = mu + rng.normal(0.0, 0.7, (T, B))       # off-policy: ratios both sides of 1
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B))
    bootstrap = rng.normal(size=B)
    terminated = rng.random((T, B)) < 0.15
    truncated = (rng.random((T, B)) < 0.1) & ~terminated
    ended = terminated | truncated
    assert terminated.any() and truncated.any()   # episode ends of both kinds inside the block
    return mu, pi, rewards, values, bootstrap, terminated, ended


def as_torch(*arrays):
    """float64, so the comparison with the float64 reference holds to 1e-6 and tighter."""
    return [torch.as_tensor(np.asarray(a, np.float64)) for a in arrays]


@pytest.mark.parametrize("rho_bar,c_bar", [(1.0, 1.0), (2.0, 0.5), (float("inf"), 1.0)])
def test_vtrace_equals_the_papers_sum(rho_bar, c_bar):
    rng = np.random.default_rng(7)
    for _ in range(3):
        mu, pi, r, v, boot, term, ended = random_block(rng)
        want_vs, want_adv = naive_vtrace(mu, pi, r, v, boot, term, ended, 0.95, rho_bar, c_bar)
        vs, adv = vtrace(*as_torch(mu, pi, r, v, boot, term, ended), gamma=0.95,
                         rho_clip=rho_bar, c_clip=c_bar)
        np.testing.assert_allclose(vs.numpy(), want_vs, rtol=0, atol=1e-6)
        np.testing.assert_allclose(adv.numpy(), want_adv, rtol=0, atol=1e-6)


def test_clipping_matters():
    """The truncation levels change the targets when ratios exceed them (the test above could
    not tell a clip from none if the data never reached it)."""
    rng = np.random.default_rng(3)
    mu, pi, r, v, boot, term, ended = random_block(rng)
    args = as_torch(mu, pi, r, v, boot, term, ended)
    clipped, _ = vtrace(*args, gamma=0.95, rho_clip=1.0, c_clip=1.0)
    unclipped, _ = vtrace(*args, gamma=0.95, rho_clip=float("inf"), c_clip=float("inf"))
    assert (clipped - unclipped).abs().max() > 1e-2


def test_on_policy_without_truncation_gives_the_lambda_one_returns():
    """behaviour = target and rho_bar = c_bar = inf: every weight is 1, so v_t is the n-step
    return bootstrapped at the block's end (GAE with lambda = 1, plus the values), and A_t is
    the one-step TD error on v_{t+1}."""
    rng = np.random.default_rng(11)
    mu, _, r, v, boot, term, ended = random_block(rng, T=20, B=4)
    inf = float("inf")
    vs, adv = vtrace(*as_torch(mu, mu, r, v, boot, term, ended), gamma=0.9, rho_clip=inf,
                     c_clip=inf)
    values = np.concatenate([v, boot[None]], 0)
    gae = compute_gae(r, values, term.astype(float), ended.astype(float), 0.9, 1.0)
    np.testing.assert_allclose(vs.numpy(), gae + v, rtol=1e-5, atol=1e-5)
    next_v = np.concatenate([vs.numpy()[1:], boot[None]], 0)
    next_v = np.where(ended, values[1:], next_v)
    np.testing.assert_allclose(adv.numpy(), r + 0.9 * (1 - term) * next_v - v, rtol=1e-5,
                               atol=1e-5)
