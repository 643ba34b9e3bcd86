"""The Nature DQN network (Mnih et al., 2015) as PPO's actor-critic trunk for pixel observations.

    uint8 (B, 4, 84, 84) -> / 255 -> conv 32 8x8 /4 -> conv 64 4x4 /2 -> conv 64 3x3 /1
    -> flatten 3136 -> linear 512 -> [pi | v]

CleanRL's ``ppo_atari.py`` layout and initialisation (orthogonal, gain sqrt 2; the policy 0.01,
the value 1). Observations stay uint8 until the first layer, which divides by 255: no float copy of
a rollout ever exists. Like :class:`~mpirl.models.actor_critic.ActorCritic` it is a flat
``nn.Sequential`` whose last layer packs ``[pi | v]``, so everything that takes the actor-critic
(the policy, the trainer, checkpoints, mpirl.load) takes it too.
"""
from __future__ import annotations

import math

import gymnasium as gym
import torch
from torch import nn

from mpirl.models.actor_critic import PackedActorCritic, PolicyValueHead, layer_init


class ScaleBytes(nn.Module):
    """uint8 pixels -> float in [0, 1], inside the network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0)


def conv_init(layer: nn.Conv2d, std: float = math.sqrt(2)) -> nn.Conv2d:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, 0.0)
    return layer


class NatureCNNActorCritic(PackedActorCritic, nn.Sequential):
    """The Nature CNN trunk and a ``[pi | v]`` head, for Discrete actions."""

    continuous = False

    def __init__(self, obs_shape: tuple, action_space: gym.Space, features: int = 512):
        channels, height, width = obs_shape
        self.action_dim = int(action_space.n)
        trunk = [ScaleBytes(),
                 nn.Sequential(conv_init(nn.Conv2d(channels, 32, 8, stride=4)), nn.ReLU()),
                 nn.Sequential(conv_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU()),
                 nn.Sequential(conv_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU()),
                 nn.Flatten()]
        with torch.no_grad():
            flat = nn.Sequential(*trunk)(torch.zeros(1, channels, height, width,
                                                     dtype=torch.uint8)).shape[1]
        super().__init__(*trunk,
                         nn.Sequential(layer_init(nn.Linear(flat, features)), nn.ReLU()),
                         PolicyValueHead(features, self.action_dim, continuous=False))
        self.obs_shape = tuple(obs_shape)
