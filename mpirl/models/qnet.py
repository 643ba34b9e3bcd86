"""Q-network for Discrete actions: an MLP trunk and a plain or dueling head.

    QNetwork(obs)  (B, obs_dim) -> Q-values (B, n_actions)

The dueling head (Wang et al., 2016) estimates a state value V(s) (B, 1) and advantages
A(s, a) (B, n_actions) and combines them as Q = V + A - mean_a A, which makes V identifiable.
"""
from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden_sizes, out_dim: int) -> nn.Sequential:
    """Linear + ReLU per hidden width, then a linear output layer."""
    layers, width = [], in_dim
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


class QNetwork(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes=(64, 64), dueling: bool = False):
        super().__init__()
        self.dueling = dueling
        self.n_actions = n_actions
        *trunk, last = hidden_sizes
        self.trunk = mlp(obs_dim, trunk, last)   # features: (B, last)
        self.act = nn.ReLU()
        if dueling:
            self.value = nn.Linear(last, 1)
            self.advantage = nn.Linear(last, n_actions)
        else:
            self.q = nn.Linear(last, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.act(self.trunk(obs))
        if not self.dueling:
            return self.q(h)
        advantage = self.advantage(h)
        return self.value(h) + advantage - advantage.mean(dim=1, keepdim=True)
