"""Environments by id: what gymnasium knows about one (checked before any training), and the
vector env of a rank.

Kept free of torch so that bad input is reported in a fraction of a second.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from mpirl.envs.atari import Preprocessing, is_atari, make_atari_vec
from mpirl.envs.atari import register as register_atari
from mpirl.envs.normalize import ObsNormalizer, PixelObs
from mpirl.errors import ConfigError

def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, or a ConfigError naming close matches (or, for an
    ALE id, the extra to install)."""
    if is_atari(env_id):
        register_atari()
    try:
        return gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"unknown environment {env_id!r}: {exc}") from None


def default_target(env_id: str) -> float | None:
    """The environment's own 'solved' threshold (CartPole-v1: 475), if it has one."""
    return env_spec(env_id).reward_threshold


def action_kind(env_id: str) -> str:
    """``"continuous"`` for an env with Box actions, else ``"discrete"`` (also when the env
    cannot be built: the checks made before training say why)."""
    try:
        env_spec(env_id)   # (registers the ALE's ids)
        env = gym.make(env_id)
    except Exception:  # noqa: BLE001 - reported by mpirl.checks
        return "discrete"
    try:
        return "continuous" if isinstance(env.action_space, gym.spaces.Box) else "discrete"
    finally:
        env.close()


def make_vec(env_id: str, num_envs: int, mode: str = "auto", threads: int = 1,
             preprocessing: Preprocessing = Preprocessing()) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies: the env's native vectorised implementation when it
    has one (``auto``/``native``; CartPole's is ~10x faster per step than a loop of single
    envs; Atari's is ale-py's threaded C++ env, with ``threads`` threads and
    ``preprocessing``), otherwise gymnasium's sync or async vector env."""
    if is_atari(env_id):
        return make_atari_vec(env_id, num_envs, mode, threads, preprocessing)
    spec = env_spec(env_id)
    if mode in ("auto", "native") and spec.vector_entry_point is not None:
        return gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point")
    if mode == "native":
        raise ConfigError(f"{env_id} has no native vectorised implementation; "
                          "use --vector-mode sync or async")
    return gym.make_vec(env_id, num_envs, vectorization_mode="async" if mode == "async" else "sync")


def is_image(space: gym.Space) -> bool:
    """Pixel observations: a uint8 Box of (channels or frames, height, width)."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def normalizer_for(space: gym.Space, enabled: bool = True,
                   clip: float = 10.0) -> ObsNormalizer | PixelObs:
    """The observation normaliser of ``space``: none for pixels (uint8 to the network), running
    statistics for vectors."""
    return PixelObs(space.shape) if is_image(space) else ObsNormalizer(space.shape, enabled, clip)


def clip_to_space(actions: np.ndarray, space: gym.Space) -> np.ndarray:
    """Box actions clipped to the space's bounds (the Gaussian policy is unbounded); others as is."""
    if isinstance(space, gym.spaces.Box):
        return np.clip(actions, space.low, space.high)
    return actions
