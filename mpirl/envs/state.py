"""A vector env's exact state as plain tensors, so a resumed run continues bit for bit.

Supported: gymnasium's classic-control environments, natively vectorised (CartPole) or in a
SyncVectorEnv — their whole state is a few arrays, a step counter and the RNG. Anything else
(AsyncVectorEnv workers, Box2D, MuJoCo) returns None from :func:`capture`, and a resumed run
starts fresh episodes and says so.

Checkpoints are loaded with ``weights_only=True``, so everything here is converted to tensors,
numbers, strings, lists and dicts (numpy arrays become tensors and back).
"""
from __future__ import annotations

import gymnasium as gym
import torch

from mpirl.checkpoint import plain

# The attributes that hold a classic-control env's dynamic state (single or natively vectorised).
STATE_ATTRS = ("state", "steps", "prev_done", "steps_beyond_terminated", "last_u")
CLASSIC = "gymnasium.envs.classic_control"


def _from_plain(value):
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    if isinstance(value, dict):
        return {k: _from_plain(v) for k, v in value.items()}
    return value


def _supported(env) -> bool:
    return type(env).__module__.startswith(CLASSIC)


def _capture_env(env) -> dict:
    base = env.unwrapped
    out = {k: plain(getattr(base, k)) for k in STATE_ATTRS if hasattr(base, k)}
    out["rng"] = plain(base.np_random.bit_generator.state)
    wrapper = env
    while isinstance(wrapper, gym.Wrapper):  # TimeLimit keeps the episode's step count
        if hasattr(wrapper, "_elapsed_steps"):
            out["elapsed_steps"] = wrapper._elapsed_steps
        wrapper = wrapper.env
    return out


def _restore_env(env, state: dict) -> None:
    base = env.unwrapped
    for key in STATE_ATTRS:
        if key in state:
            setattr(base, key, _from_plain(state[key]))
    base.np_random.bit_generator.state = _from_plain(state["rng"])
    wrapper = env
    while isinstance(wrapper, gym.Wrapper):
        if hasattr(wrapper, "_elapsed_steps"):
            wrapper._elapsed_steps = state.get("elapsed_steps")
        wrapper = wrapper.env


def _kind(vec: gym.vector.VectorEnv) -> str | None:
    """"sync", "native" (the env's own vectorised class), or None for async (its envs live in
    other processes, out of reach)."""
    if isinstance(vec, gym.vector.SyncVectorEnv):
        return "sync"
    return None if isinstance(vec, gym.vector.AsyncVectorEnv) else "native"


def capture(vec: gym.vector.VectorEnv) -> dict | None:
    """The full dynamic state of ``vec``, or None where it cannot be saved."""
    kind = _kind(vec)
    if kind == "sync":
        if not all(_supported(e.unwrapped) for e in vec.envs):
            return None
        return {"kind": "sync", "envs": [_capture_env(e) for e in vec.envs],
                "autoreset": plain(vec._autoreset_envs)}
    if kind is None or not _supported(vec.unwrapped):
        return None
    return {"kind": "native", "env": _capture_env(vec)}


def restore(vec: gym.vector.VectorEnv, state: dict) -> bool:
    """Put ``vec`` (freshly made and reset, of the same size) into ``state``. False, touching
    nothing, when ``state`` was saved from another kind of vector env (a run resumed with another
    --vector-mode): its episodes then start afresh."""
    if state["kind"] != _kind(vec):
        return False
    if state["kind"] == "sync":
        for env, s in zip(vec.envs, state["envs"]):
            _restore_env(env, s)
        vec._autoreset_envs = _from_plain(state["autoreset"])
    else:
        _restore_env(vec, state["env"])
    return True
