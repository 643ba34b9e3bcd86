"""The PPO actor-critic as a flat sequence of layers, so that a pipeline can cut it anywhere.

``ActorCritic`` is an ``nn.Sequential``: hidden blocks (Linear + Tanh), then one head block whose
single output tensor packs the policy parameters and the value:

    out[:, :A]  logits (Discrete) or action mean (Box)      A = n actions or action dims
    out[:, A]   state value

A single tensor between every pair of layers is what lets a pipeline stage send it as one
contiguous message. ``policy`` turns ``out`` into samples, log-probabilities and entropies.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights, constant bias: the PPO implementation details' initialisation."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def hidden_blocks(in_dim: int, hidden_sizes, activation=nn.Tanh) -> list[nn.Module]:
    """One ``Linear + activation`` block per hidden width."""
    blocks, width = [], in_dim
    for h in hidden_sizes:
        blocks.append(nn.Sequential(layer_init(nn.Linear(width, h)), activation()))
        width = h
    return blocks


def run_layers(layers, x: torch.Tensor) -> torch.Tensor:
    """Apply ``layers`` in order, calling Linear / Tanh / ReLU in their functional form.

    ``nn.Module.__call__`` costs a few microseconds per layer, as much as the arithmetic for a
    rollout step's batch of 16 observations: skipping it makes acting ~3x faster. Any other layer
    type is called through its ``forward`` (forward hooks are not run: mpirl sets none).
    """
    for layer in layers:
        kind = type(layer)
        if kind is nn.Linear:
            x = F.linear(x, layer.weight, layer.bias)
        elif kind is nn.Tanh:
            x = torch.tanh(x)
        elif kind is nn.ReLU:
            x = torch.relu(x)
        elif kind is nn.Sequential:
            x = run_layers(layer, x)
        else:
            x = layer.forward(x)
    return x


def policy_output(action_space: gym.Space) -> tuple[bool, int]:
    """(Box actions?, the policy head's width): a Gaussian's mean per action dimension, or a
    logit per discrete action."""
    continuous = isinstance(action_space, gym.spaces.Box)
    return continuous, int(np.prod(action_space.shape)) if continuous else int(action_space.n)


class PolicyValueHead(nn.Module):
    """Policy parameters and value from the last hidden features, packed as ``[pi | v]``."""

    def __init__(self, in_dim: int, action_dim: int, continuous: bool, log_std_init: float = 0.0):
        super().__init__()
        self.policy = layer_init(nn.Linear(in_dim, action_dim), std=0.01)
        self.value = layer_init(nn.Linear(in_dim, 1), std=1.0)
        # State-independent log standard deviation of the Gaussian policy (Box actions only).
        self.log_std = (nn.Parameter(torch.full((action_dim,), float(log_std_init)))
                        if continuous else None)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.linear(h, self.policy.weight, self.policy.bias),
                          F.linear(h, self.value.weight, self.value.bias)], dim=-1)


class PackedActorCritic:
    """What an ``nn.Sequential`` whose last layer is a :class:`PolicyValueHead` offers: the
    forward pass through :func:`run_layers`, the head, and the packed output split in two.
    (The MLP below and the Nature CNN of mpirl.models.nature_cnn.)"""

    action_dim: int

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return run_layers(self, obs)

    @property
    def head(self) -> PolicyValueHead:
        return self[-1]

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``out`` (B, A+1) -> policy parameters (B, A), value (B,)."""
        return out[:, :self.action_dim], out[:, self.action_dim]


class ActorCritic(PackedActorCritic, nn.Sequential):
    """Shared-trunk actor-critic for Discrete or Box action spaces and flat observations
    (``--value-net shared``; :class:`SeparateActorCritic` is the other)."""

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden_sizes=(64, 64),
                 activation: str = "tanh", log_std_init: float = 0.0):
        self.continuous, self.action_dim = policy_output(action_space)
        head = PolicyValueHead(hidden_sizes[-1], self.action_dim, self.continuous, log_std_init)
        super().__init__(*hidden_blocks(obs_dim, hidden_sizes, ACTIVATIONS[activation]), head)
        self.obs_dim = obs_dim
        self.in_shape = (obs_dim,)   # one observation's shape (a pipeline's first stage takes it)


class SeparateActorCritic(nn.Module):
    """Actor-critic with two MLPs of the same widths: the actor's features feed only the policy,
    the critic's only the value (CleanRL's PPO, SB3's default MlpPolicy). ``--value-net
    separate``: the value loss cannot pull on the policy's features, as it does through a shared
    trunk, at twice the hidden parameters. Its output is packed ``[pi | v]`` like
    :class:`ActorCritic`'s, so acting, evaluation and checkpoints treat both alike; not
    cuttable into pipeline stages (two towers are not one sequence of layers)."""

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden_sizes=(64, 64),
                 activation: str = "tanh", log_std_init: float = 0.0):
        super().__init__()
        self.continuous, self.action_dim = policy_output(action_space)
        self.actor = nn.Sequential(*hidden_blocks(obs_dim, hidden_sizes, ACTIVATIONS[activation]))
        self.critic = nn.Sequential(*hidden_blocks(obs_dim, hidden_sizes, ACTIVATIONS[activation]))
        self.head = PolicyValueHead(hidden_sizes[-1], self.action_dim, self.continuous,
                                    log_std_init)
        self.obs_dim = obs_dim
        self.in_shape = (obs_dim,)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        head = self.head
        return torch.cat([F.linear(run_layers(self.actor, obs), head.policy.weight, head.policy.bias),
                          F.linear(run_layers(self.critic, obs), head.value.weight, head.value.bias)],
                         dim=-1)

    split = PackedActorCritic.split


class Policy:
    """Sampling and scoring actions from the packed head output, without torch.distributions
    (whose per-call overhead dominates for the tiny batches of a rollout step)."""

    def __init__(self, continuous: bool, log_std: torch.Tensor | None = None):
        self.continuous = continuous
        self.log_std = log_std

    def sample(self, params: torch.Tensor, generator: torch.Generator):
        """Actions and their log-probabilities for a batch of policy parameters (B, A)."""
        if self.continuous:
            std = self.log_std.exp().to(params.device)   # (a GPU's model samples on the CPU)
            actions = params + std * torch.randn(params.shape, generator=generator)
            return actions, self._gaussian_logp(params, actions)
        logp_all = torch.log_softmax(params, dim=-1)
        actions = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(-1)
        return actions, logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        """The deterministic action used for evaluation."""
        return params if self.continuous else params.argmax(-1)

    def logp_entropy(self, params: torch.Tensor, actions: torch.Tensor):
        """Log-probabilities of ``actions`` (B,) and entropies (B,) under ``params``."""
        if self.continuous:
            entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(len(params))
            return self._gaussian_logp(params, actions), entropy
        logp_all = torch.log_softmax(params, dim=-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), entropy

    def _gaussian_logp(self, mean, actions):
        log_std = self.log_std.to(mean.device)
        z = (actions - mean) / log_std.exp()
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
