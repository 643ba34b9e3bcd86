"""Q-network for Discrete actions: an MLP trunk and a plain or dueling head.

    QNetwork(obs)  (B, obs_dim) -> Q-values (B, n_actions)

The dueling head (Wang et al., 2016) estimates a state value V(s) (B, 1) and advantages
A(s, a) (B, n_actions) and combines them as Q = V + A - mean_a A, which makes V identifiable.

:class:`QHead` is the same head as a module of its own, for networks with several heads (one per
task, :class:`~mpirl.models.multitask.MultiTaskQNetwork`); it may have more outputs than its task
has actions: those are masked (the most negative float: never a max or an argmax) and left out of
the dueling mean.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

# The exploration left in an evaluation that is not greedy (--no-eval-deterministic): Mnih et al.
# 2015's, kept by Dopamine and CleanRL's dqn_atari. A wholly greedy agent can stall a game (in
# Breakout, never pressing FIRE after a lost life).
EVAL_EPSILON = 0.05


def q_actions(q: torch.Tensor, deterministic: bool = True,
              generator: torch.Generator | None = None) -> np.ndarray:
    """The greedy actions of Q-values ``q`` (B, A); ``deterministic=False``: each replaced by a
    uniformly random one with probability EVAL_EPSILON, drawn from ``generator``."""
    actions = q.argmax(dim=1)
    if not deterministic:
        explore = torch.rand(q.shape[0], generator=generator) < EVAL_EPSILON
        random = torch.randint(q.shape[1], (q.shape[0],), generator=generator)
        actions = torch.where(explore, random, actions)
    return actions.numpy()


def mlp(in_dim: int, hidden_sizes, out_dim: int) -> nn.Sequential:
    """Linear + ReLU per hidden width, then a linear output layer."""
    layers, width = [], in_dim
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


def _add_head(module: nn.Module, in_dim: int, n_actions: int, dueling: bool) -> None:
    """The head's layers as attributes of ``module``: ``q``, or ``value`` and ``advantage``."""
    module.dueling = dueling
    if dueling:
        module.value = nn.Linear(in_dim, 1)
        module.advantage = nn.Linear(in_dim, n_actions)
    else:
        module.q = nn.Linear(in_dim, n_actions)


def _q_values(module: nn.Module, h: torch.Tensor, n_valid: int | None = None) -> torch.Tensor:
    """Q-values (B, n_actions) of features ``h`` through ``module``'s head; outputs from
    ``n_valid`` on are not actions: masked, and left out of the dueling mean."""
    if not module.dueling:
        q = module.q(h)
    else:
        advantage = module.advantage(h)
        mean = advantage[:, :n_valid].mean(dim=1, keepdim=True)
        q = module.value(h) + advantage - mean
    if n_valid is not None and n_valid < q.shape[1]:
        valid = torch.arange(q.shape[1], device=q.device) < n_valid
        q = torch.where(valid, q, torch.finfo(q.dtype).min)
    return q


class QNetwork(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes=(64, 64), dueling: bool = False):
        super().__init__()
        self.n_actions = n_actions
        *trunk, last = hidden_sizes
        self.trunk = mlp(obs_dim, trunk, last)   # features: (B, last)
        self.act = nn.ReLU()
        _add_head(self, last, n_actions, dueling)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return _q_values(self, self.act(self.trunk(obs)))


class QHead(nn.Module):
    """A Q head on ``in_dim`` features with ``n_outputs`` outputs, the first ``n_valid`` of them
    the task's actions (default: all)."""

    def __init__(self, in_dim: int, n_outputs: int, dueling: bool = False,
                 n_valid: int | None = None):
        super().__init__()
        self.n_valid = n_outputs if n_valid is None else n_valid
        _add_head(self, in_dim, n_outputs, dueling)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return _q_values(self, h, self.n_valid)
