"""Networks for off-policy continuous control (SAC, TD3), as CleanRL's sac_continuous_action.py and
td3_continuous_action.py build them: MLP critics Q(s, a) in twins, a tanh-squashed Gaussian actor
(SAC) or a deterministic one (TD3), actions scaled to the Box space's bounds.

    SquashedGaussianActor(obs) -> (action, log-probability)   a = bias + scale tanh(u), u ~ N(mu, s)
    DeterministicActor(obs)    -> action                      a = bias + scale tanh(f(obs))
    TwinQ(obs, action)         -> (Q1, Q2)
    OffPolicyAgent             the critics, the actor and (SAC) the temperature as one module, so
                               that one flat buffer holds every gradient and one Allreduce
                               averages them (mpirl.optim.FlatAdam steps each part on its own)

The log-probability of a squashed sample is the Gaussian's, corrected for the squash and the
scale: log pi(a|s) = log N(u; mu, s) - sum_i log(scale_i (1 - tanh(u_i)^2) + 1e-6) (SAC's paper,
appendix C, with CleanRL's epsilon).
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0   # CleanRL's bounds on the actor's log standard deviation


from mpirl.models.qnet import mlp


class ActionScale(nn.Module):
    """A Box space's bounds as buffers: ``bias + scale * tanh(.)`` lands inside them."""

    def __init__(self, space: gym.spaces.Box):
        super().__init__()
        low, high = (torch.as_tensor(np.asarray(b, np.float32)) for b in (space.low, space.high))
        self.register_buffer("scale", (high - low) / 2)
        self.register_buffer("bias", (high + low) / 2)


class SquashedGaussianActor(nn.Module):
    def __init__(self, obs_dim: int, space: gym.spaces.Box, hidden_sizes=(256, 256)):
        super().__init__()
        self.action_dim = int(np.prod(space.shape))
        self.trunk = mlp(obs_dim, hidden_sizes[:-1], hidden_sizes[-1])
        self.mean = nn.Linear(hidden_sizes[-1], self.action_dim)
        self.log_std = nn.Linear(hidden_sizes[-1], self.action_dim)
        self.bounds = ActionScale(space)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log standard deviation of the pre-squash Gaussian."""
        h = F.relu(self.trunk(obs))
        log_std = torch.tanh(self.log_std(h))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return self.mean(h), log_std

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None):
        """A reparameterised sample and its log-probability (B,)."""
        mean, log_std = self.distribution(obs)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        u = mean + log_std.exp() * noise
        y = torch.tanh(u)
        gaussian = (-0.5 * noise.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(1)
        squash = torch.log(self.bounds.scale * (1 - y.square()) + 1e-6).sum(1)
        return self.bounds.bias + self.bounds.scale * y, gaussian - squash

    def explore(self, obs: torch.Tensor, generator: torch.Generator,
                noise_scale: float = 1.0) -> torch.Tensor:
        """An action to act with, its standard deviation scaled by ``noise_scale`` (a rank's
        share of the exploration spread; 1: the policy's own sample)."""
        mean, log_std = self.distribution(obs)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return self.bounds.bias + self.bounds.scale * torch.tanh(
            mean + noise_scale * log_std.exp() * noise)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action (evaluation): the squashed mean."""
        mean, _ = self.distribution(obs)
        return self.bounds.bias + self.bounds.scale * torch.tanh(mean)


class DeterministicActor(nn.Module):
    def __init__(self, obs_dim: int, space: gym.spaces.Box, hidden_sizes=(256, 256)):
        super().__init__()
        self.action_dim = int(np.prod(space.shape))
        self.net = mlp(obs_dim, hidden_sizes, self.action_dim)
        self.bounds = ActionScale(space)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.bounds.bias + self.bounds.scale * torch.tanh(self.net(obs))

    mode = forward


class TwinQ(nn.Module):
    """Two critics Q(s, a) of the same shape (clipped double Q-learning)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes=(256, 256)):
        super().__init__()
        self.q1 = mlp(obs_dim + action_dim, hidden_sizes, 1)
        self.q2 = mlp(obs_dim + action_dim, hidden_sizes, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor):
        x = torch.cat([obs, action], dim=1)
        return self.q1(x).squeeze(1), self.q2(x).squeeze(1)

    def first(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q1 alone (TD3's actor loss)."""
        return self.q1(torch.cat([obs, action], dim=1)).squeeze(1)


class Temperature(nn.Module):
    """SAC's entropy temperature alpha, learned as log alpha (from ``alpha``)."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor([math.log(alpha)]))

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp()


class OffPolicyAgent(nn.Module):
    """Twin critics, an actor and, for SAC with autotuning, the temperature: in this order, so
    each is one contiguous part of the flat parameter vector (``PARTS``)."""

    PARTS = ["critic", "actor", "temperature"]

    def __init__(self, algo: str, obs_dim: int, space: gym.spaces.Box, hidden_sizes=(256, 256),
                 autotune: bool = True, alpha: float = 0.2):
        super().__init__()
        action_dim = int(np.prod(space.shape))
        self.algo = algo
        self.critic = TwinQ(obs_dim, action_dim, hidden_sizes)
        self.actor = (SquashedGaussianActor(obs_dim, space, hidden_sizes) if algo == "sac"
                      else DeterministicActor(obs_dim, space, hidden_sizes))
        # autotuning starts from alpha = 1, as CleanRL and SB3 do; a fixed alpha is a buffer
        if algo == "sac" and autotune:
            self.temperature = Temperature(1.0)
        else:
            self.register_buffer("fixed_alpha", torch.tensor([alpha]))

    def alpha(self) -> torch.Tensor:
        """SAC's temperature now, without its gradient."""
        if hasattr(self, "temperature"):
            return self.temperature().detach()
        return self.fixed_alpha

    def parts(self) -> list[str]:
        return [name for name in self.PARTS if hasattr(self, name)]
