"""The Nature DQN network (Mnih et al., 2015) for pixel observations: PPO's and IMPALA's
actor-critic trunk, and DQN's Q-network.

    uint8 (B, 4, 84, 84) -> / 255 -> conv 32 8x8 /4 -> conv 64 4x4 /2 -> conv 64 3x3 /1
    -> flatten 3136 -> linear 512 -> [pi | v] (actor-critic) or Q-values (DQN)

CleanRL's ``ppo_atari.py`` layout and initialisation (orthogonal, gain sqrt 2; the policy 0.01,
the value 1). Observations stay uint8 until the first layer, which divides by 255: no float copy of
a rollout ever exists. Like :class:`~mpirl.models.actor_critic.ActorCritic` it is a flat
``nn.Sequential`` whose last layer packs ``[pi | v]``, so everything that takes the actor-critic
(the policy, the trainer, checkpoints, mpirl.load) takes it too.
"""
from __future__ import annotations

import itertools
import math

import gymnasium as gym
import torch
from torch import nn

from mpirl.models.actor_critic import PackedActorCritic, PolicyValueHead, layer_init, run_layers
from mpirl.models.qnet import QHead


class ScaleBytes(nn.Module):
    """uint8 pixels -> float in [0, 1], inside the network, laid out channels-last: oneDNN's
    convolutions take that layout 1.3x faster (the weights stay as they are). ``channels_last``
    False keeps torch's default layout (the benchmark's baseline)."""

    channels_last = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class PixelNetwork:
    """The forward pass of a flat ``nn.Sequential`` whose last layer is its head: the trunk
    under bfloat16 autocast when ``bf16`` (2.5x faster on CPUs with AVX512-BF16 or AMX; python
    -m mpirl.bench atari), then the head in float32, so that logits, values and Q-values, the
    losses and every gradient are float32 (parameters are never cast)."""

    bf16 = False

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self[-1](trunk_features(itertools.islice(self, len(self) - 1), obs, self.bf16))


def trunk_features(trunk, obs: torch.Tensor, bf16: bool) -> torch.Tensor:
    """The ``trunk`` layers' features of ``obs``, computed under bfloat16 autocast when ``bf16``,
    returned as float32 for the head that follows."""
    with torch.autocast(device_type=obs.device.type, dtype=torch.bfloat16, enabled=bf16):
        features = run_layers(trunk, obs)
    return features.float()


def conv_init(layer: nn.Conv2d, std: float = math.sqrt(2)) -> nn.Conv2d:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, 0.0)
    return layer


def nature_trunk(obs_shape: tuple, features: int = 512) -> list[nn.Module]:
    """uint8 (B, C, H, W) -> (B, features): the scaling, the three conv layers and the linear
    layer, as a list of layers (the networks below are flat Sequentials of them)."""
    channels, height, width = obs_shape
    convs = [ScaleBytes(),
             nn.Sequential(conv_init(nn.Conv2d(channels, 32, 8, stride=4)), nn.ReLU()),
             nn.Sequential(conv_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU()),
             nn.Sequential(conv_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU()),
             nn.Flatten()]
    with torch.no_grad():
        flat = nn.Sequential(*convs)(torch.zeros(1, channels, height, width,
                                                 dtype=torch.uint8)).shape[1]
    return convs + [nn.Sequential(layer_init(nn.Linear(flat, features)), nn.ReLU())]


class NatureCNNActorCritic(PixelNetwork, PackedActorCritic, nn.Sequential):
    """The Nature CNN trunk and a ``[pi | v]`` head, for Discrete actions."""

    continuous = False

    def __init__(self, obs_shape: tuple, action_space: gym.Space, features: int = 512,
                 bf16: bool = False):
        self.action_dim = int(action_space.n)
        super().__init__(*nature_trunk(obs_shape, features),
                         PolicyValueHead(features, self.action_dim, continuous=False))
        self.obs_shape, self.bf16 = tuple(obs_shape), bf16
        self.in_shape = self.obs_shape


class NatureCNNQNetwork(PixelNetwork, nn.Sequential):
    """The Nature DQN itself: the trunk and a Q head (plain, or dueling: Wang et al. 2016)."""

    def __init__(self, obs_shape: tuple, n_actions: int, dueling: bool = False,
                 features: int = 512, bf16: bool = False):
        super().__init__(*nature_trunk(obs_shape, features), QHead(features, n_actions, dueling))
        self.n_actions, self.obs_shape, self.bf16 = n_actions, tuple(obs_shape), bf16
