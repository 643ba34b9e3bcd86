"""A vector env's exact state as plain tensors, so a resumed run continues bit for bit.

Supported: gymnasium's classic-control environments, natively vectorised (CartPole) or in a
SyncVectorEnv — their whole state is a few arrays, a step counter and the RNG — and the ALE's
Atari games in a SyncVectorEnv (``--vector-mode sync``): the emulator's serialised state with its
RNG, the env's RNG (no-op starts), and what the preprocessing wrappers carry from step to step
(lives, the frame stack). Anything else (AsyncVectorEnv workers, ale-py's C++ vector env, Box2D,
MuJoCo) returns None from :func:`capture`, and a resumed run starts fresh episodes and says so.

Checkpoints are loaded with ``weights_only=True``, so everything here is converted to tensors,
numbers, strings, lists and dicts (numpy arrays become tensors and back).
"""
from __future__ import annotations

from collections import deque

import gymnasium as gym
import torch

from mpirl.checkpoint import plain

# The attributes that hold a classic-control env's dynamic state (single or natively vectorised).
STATE_ATTRS = ("state", "steps", "prev_done", "steps_beyond_terminated", "last_u")
CLASSIC = "gymnasium.envs.classic_control"
ALE = "ale_py.env"
# What wrappers carry from one step to the next: AtariPreprocessing's lives, game-over flag and
# max-pool buffers, FrameStackObservation's frames. (TimeLimit's count: "elapsed_steps".)
WRAPPER_ATTRS = ("lives", "game_over", "obs_buffer", "obs_queue")


def _from_plain(value):
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    if isinstance(value, dict):
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def _supported(env) -> bool:
    return type(env).__module__.startswith((CLASSIC, ALE))


def _wrappers(env) -> list:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


def _capture_env(env) -> dict:
    base = env.unwrapped
    out = {k: plain(getattr(base, k)) for k in STATE_ATTRS if hasattr(base, k)}
    if type(base).__module__.startswith(ALE):   # the emulator, with its RNG
        emulator = base.ale.cloneState(include_rng=True).serialize()
        out["ale"] = torch.frombuffer(bytearray(emulator), dtype=torch.uint8)
    out["rng"] = plain(base.np_random.bit_generator.state)
    out["wrappers"] = []
    for wrapper in _wrappers(env):
        if hasattr(wrapper, "_elapsed_steps"):   # TimeLimit keeps the episode's step count
            out["elapsed_steps"] = wrapper._elapsed_steps
        out["wrappers"].append({k: plain(list(getattr(wrapper, k))) if k == "obs_queue"
                                else plain(getattr(wrapper, k))
                                for k in WRAPPER_ATTRS if hasattr(wrapper, k)})
    return out


def _restore_env(env, state: dict) -> None:
    base = env.unwrapped
    for key in STATE_ATTRS:
        if key in state:
            setattr(base, key, _from_plain(state[key]))
    if "ale" in state:
        import ale_py
        base.ale.restoreState(ale_py.ALEState(state["ale"].numpy().tobytes()))
    base.np_random.bit_generator.state = _from_plain(state["rng"])
    for wrapper, saved in zip(_wrappers(env), state.get("wrappers", [])):
        for key, value in saved.items():
            value = _from_plain(value)
            if key == "obs_queue":
                value = deque(value, maxlen=wrapper.obs_queue.maxlen)
            setattr(wrapper, key, value)
        if hasattr(wrapper, "_elapsed_steps"):
            wrapper._elapsed_steps = state.get("elapsed_steps")


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
