"""One agent for several tasks: a shared trunk, and per task a policy head and a value head (PPO)
or a Q head (DQN).

Input: a task's observation padded with zeros to the widest task's width D, followed by a one-hot
of the task (width D + K). Output, like :class:`~mpirl.models.actor_critic.ActorCritic`, one packed
tensor ``[logits | value]`` of shape (B, A + 1), where A is the largest action count of all tasks:
task k's policy head has A outputs, and those beyond task k's own ``n_k`` actions are masked to
the most negative float (probability exactly 0; a true -inf would turn the entropy's 0 * log 0
into NaN). Every task thus produces the same shapes, so rollout buffers and the
:class:`~mpirl.models.actor_critic.Policy` work unchanged.

Each rank evaluates only its own task's heads (``model.task``); the other heads get no gradient
from its batch. Every rank still holds every head (replicas stay identical), and the sync layer
averages head gradients over the ranks of their task (:mod:`mpirl.tasks.sync`).

:class:`MultiTaskQNetwork` (DQN) takes the same padded, tagged observations, but a batch may mix
tasks (transitions replayed from a memory shared by all tasks' ranks): each row goes through the
head of the task its one-hot names. Every head has A outputs; task k's beyond its ``n_k`` actions
are the most negative float, so they are never the argmax (acting) nor the max or argmax of a
target; a dueling head averages its advantages over its task's own actions only.
"""
from __future__ import annotations

import torch
from torch import nn

from mpirl.models.actor_critic import PolicyValueHead, hidden_blocks
from mpirl.models.nature_cnn import nature_trunk, trunk_features
from mpirl.models.popart import PopArt
from mpirl.models.qnet import QHead, mlp


def action_mask(action_counts: list[int]) -> torch.Tensor:
    """(K, A) bool: mask[k, a] is True when action a exists in task k (A = max count)."""
    width = max(action_counts)
    return torch.arange(width).unsqueeze(0) < torch.tensor(action_counts).unsqueeze(1)


def mask_logits(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``logits`` (B, A) with the entries where ``valid`` (A,) is False set to the dtype's min."""
    return torch.where(valid, logits, torch.finfo(logits.dtype).min)


def head_owners(trunk: nn.Module, heads: nn.ModuleList) -> dict[int, int | None]:
    """id(parameter) -> the task whose head it belongs to, or None for the shared trunk."""
    owners = {id(p): None for p in trunk.parameters()}
    for k, head in enumerate(heads):
        owners.update({id(p): k for p in head.parameters()})
    return owners


class MultiTaskActorCritic(nn.Module):
    """Shared trunk + per-task policy/value heads + PopArt.

    The trunk is ActorCritic's hidden blocks on padded, tagged vectors (``obs_width`` an int), or
    the Nature CNN on every game's frame stacks (``obs_width`` their shape, e.g. (4, 84, 84):
    Atari games share it, so frames are neither padded nor tagged; each rank's heads are its
    game's). ``bf16``: the CNN trunk under bfloat16 autocast, the heads in float32
    (:func:`~mpirl.models.nature_cnn.trunk_features`, as the single-task CNNs)."""

    continuous = False  # multi-task runs take Discrete action spaces (masks need a finite set)

    def __init__(self, obs_width: int | tuple, action_counts: list[int], hidden_sizes=(64, 64),
                 popart_beta: float = 0.05, bf16: bool = False):
        super().__init__()
        self.num_tasks = len(action_counts)
        self.action_dim = max(action_counts)
        if isinstance(obs_width, tuple):   # pixels
            self.obs_dim = self.in_shape = tuple(obs_width)
            self.trunk, features = nn.Sequential(*nature_trunk(self.obs_dim)), 512
        else:
            self.obs_dim = obs_width + self.num_tasks  # padded observation + task one-hot
            self.trunk = nn.Sequential(*hidden_blocks(self.obs_dim, hidden_sizes))
            features = hidden_sizes[-1]
        self.bf16 = bf16
        self.heads = nn.ModuleList(PolicyValueHead(features, self.action_dim, False)
                                   for _ in action_counts)
        # Always present (at mean 0, std 1 it is the identity), so checkpoints have one shape
        # whether or not --popart updates it.
        self.popart = PopArt(self.num_tasks, popart_beta)
        self.valid_actions = action_mask(action_counts)  # not a buffer: derived from the tasks
        self.task = 0  # the task whose heads forward() evaluates: this rank's task

    @property
    def head(self) -> PolicyValueHead:
        """This rank's task's head (Policy reads ``head.log_std``)."""
        return self.heads[self.task]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, D + K) or frame stacks (B, C, H, W) uint8 -> packed (B, A + 1): masked logits
        of ``self.task``, then its value."""
        out = self.heads[self.task](trunk_features(self.trunk, x, self.bf16))
        logits = mask_logits(out[:, :self.action_dim],
                             self.valid_actions[self.task].to(out.device))
        return torch.cat([logits, out[:, self.action_dim:]], dim=-1)

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``out`` (B, A+1) -> logits (B, A), value (B,) (normalised units when PopArt is on)."""
        return out[:, :self.action_dim], out[:, self.action_dim]

    def owner(self) -> dict[int, int | None]:
        """id(parameter) -> the task whose head it belongs to, or None for the shared trunk."""
        return head_owners(self.trunk, self.heads)

    def value_layers(self) -> list[nn.Linear]:
        return [head.value for head in self.heads]


class MultiTaskQNetwork(nn.Module):
    """Shared trunk (QNetwork's: ReLU MLP) + one Q head per task (plain or dueling).

    ``forward(x)``: x (B, D + K) padded observations with their task one-hots, rows of any tasks
    mixed -> Q-values (B, A), each row from its own task's head, invalid actions masked. The task
    is read from the one-hot, so acting, evaluation and the DQN loss call it as a QNetwork.
    """

    def __init__(self, obs_width: int, action_counts: list[int], hidden_sizes=(64, 64),
                 dueling: bool = False):
        super().__init__()
        self.num_tasks = len(action_counts)
        self.action_dim = max(action_counts)
        self.width = obs_width
        self.obs_dim = obs_width + self.num_tasks  # padded observation + task one-hot
        *trunk, last = hidden_sizes
        self.trunk = mlp(self.obs_dim, trunk, last)
        self.act = nn.ReLU()
        self.heads = nn.ModuleList(QHead(last, self.action_dim, dueling, n_valid=n)
                                   for n in action_counts)

    def tasks_of(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) int64: the task of each row, from its one-hot."""
        return x[:, self.width:].argmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.trunk(x))
        task = self.tasks_of(x)
        # every head on every row (K tiny heads), then each row's own: a row gives the other
        # heads exactly zero gradient
        every = torch.stack([head(h) for head in self.heads], dim=1)     # (B, K, A)
        index = task.view(-1, 1, 1).expand(-1, 1, self.action_dim)
        return every.gather(1, index).squeeze(1)

    def owner(self) -> dict[int, int | None]:
        return head_owners(self.trunk, self.heads)
