"""What gymnasium knows about an environment id, checked before any training starts.

Kept free of torch so that bad input is reported in a fraction of a second.
"""
from __future__ import annotations

import gymnasium as gym

from mpirl.errors import ConfigError

ACTION_SPACES = {"ppo": (gym.spaces.Discrete, gym.spaces.Box), "dqn": (gym.spaces.Discrete,)}


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, or a ConfigError naming close matches."""
    try:
        return gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"unknown environment {env_id!r}: {exc}") from None


def default_target(env_id: str) -> float | None:
    """The environment's own 'solved' threshold (CartPole-v1: 475), if it has one."""
    return env_spec(env_id).reward_threshold


def check_env(env_id: str, algo: str) -> None:
    """The env exists, builds, and has spaces the algorithm handles."""
    env_spec(env_id)
    try:
        env = gym.make(env_id)
    except Exception as exc:  # noqa: BLE001 - any construction failure is bad input
        raise ConfigError(f"cannot create environment {env_id!r}: {exc}") from None
    obs, act = env.observation_space, env.action_space
    env.close()
    if not (isinstance(obs, gym.spaces.Box) and len(obs.shape) == 1):
        raise ConfigError(f"{env_id}: only flat vector observations are supported, not {obs}")
    if not isinstance(act, ACTION_SPACES[algo]):
        kinds = " or ".join(k.__name__ for k in ACTION_SPACES[algo])
        raise ConfigError(f"{env_id} has a {type(act).__name__} action space; "
                          f"--algo {algo} needs {kinds}")
