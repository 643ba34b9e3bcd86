"""Atari from the Arcade Learning Environment (``ALE/<Game>-v5`` ids, the ``atari`` extra).

The standard preprocessing (Mnih et al. 2015; Machado et al. 2018 for what v5 changes), each part
settable (:class:`Preprocessing`, the ``--frame-skip``, ``--frame-stack``, ``--screen-size``,
``--noop-max``, ``--fire-reset`` and ``--sticky-actions`` options): frame skip 4 with the last two
frames max-pooled, 84x84 grayscale, a stack of the last 4, up to 30 no-op starts, FIRE pressed at
reset in games that need it, whole games (no end at a lost life), sticky actions off as in
CleanRL's and rl-zoo's v5 settings, the minimal action set. Observations stay uint8
(N, stack, size, size) from the emulator to the network.

``vector_mode``: ``auto``/``native`` is ale-py's threaded C++ vector env (``AtariVectorEnv``),
its threads capped at the rank's share of the cores; ``sync``/``async`` are gymnasium's vector
envs of ``AtariPreprocessing`` + ``FrameStackObservation`` with the same settings but the FIRE
at reset (gymnasium has no wrapper for it). Rewards come unclipped from both, so that episode
returns are real game scores; the learner clips them (``--sign-rewards``). A recorded
evaluation (``mpirl.evaluate --video``) plays through the same wrappers and films the emulator's
own screen.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym

from mpirl.errors import ConfigError


@dataclass(frozen=True)
class Preprocessing:
    """What the agent sees of a game, and how it plays it."""

    frame_skip: int = 4          # emulator frames per agent step (the last two max-pooled)
    frame_stack: int = 4         # frames per observation
    screen_size: int = 84        # square grayscale frames of this side
    noop_max: int = 30           # up to this many no-ops at reset
    fire_reset: bool = True      # press FIRE at reset where the game needs it (C++ env only)
    sticky_actions: float = 0.0  # probability that the emulator repeats the previous action

    @classmethod
    def of(cls, cfg) -> "Preprocessing":
        return cls(cfg.frame_skip, cfg.frame_stack, cfg.screen_size, cfg.noop_max,
                   cfg.fire_reset, cfg.sticky_actions)

    @property
    def obs_shape(self) -> tuple:
        return (self.frame_stack, self.screen_size, self.screen_size)


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def register() -> None:
    """Make the ALE's ids known to gymnasium; a ConfigError naming the extra when it is absent."""
    try:
        import ale_py
    except ImportError:
        raise ConfigError("Atari needs the atari extra, which is not installed: pip install "
                          "'mpirl[atari]' (or 'mpirl[all]'; make setup installs it)") from None
    gym.register_envs(ale_py)


def game_of(env_id: str) -> str:
    """``ALE/Breakout-v5`` -> ``breakout`` (the ROM name ale-py's vector env takes)."""
    name = env_id.split("/", 1)[1].rsplit("-v", 1)[0]
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


class Int32Seeds(gym.vector.VectorWrapper):
    """The ALE seeds each sub-env with a 32-bit signed integer (seed + i): a rank's 32-bit seed
    is folded into that range."""

    def reset(self, *, seed=None, options=None):
        if isinstance(seed, int):
            seed %= 2**31 - self.num_envs
        return self.env.reset(seed=seed, options=options)


def make_atari_vec(env_id: str, num_envs: int, mode: str = "auto", threads: int = 1,
                   preprocessing: Preprocessing = Preprocessing()) -> gym.vector.VectorEnv:
    """``num_envs`` preprocessed copies of the game (see the module's docstring)."""
    register()
    p = preprocessing
    if mode in ("auto", "native"):
        from ale_py.vector_env import AtariVectorEnv
        return Int32Seeds(AtariVectorEnv(
            game_of(env_id), num_envs, num_threads=max(1, threads), frameskip=p.frame_skip,
            img_height=p.screen_size, img_width=p.screen_size, stack_num=p.frame_stack,
            noop_max=p.noop_max, episodic_life=False, reward_clipping=False,
            use_fire_reset=p.fire_reset, repeat_action_probability=p.sticky_actions,
            autoreset_mode="NextStep"))
    vector = gym.vector.AsyncVectorEnv if mode == "async" else gym.vector.SyncVectorEnv
    return vector([lambda: preprocessed(env_id, p) for _ in range(num_envs)])


def preprocessed(env_id: str, preprocessing: Preprocessing = Preprocessing(),
                 video: dict | None = None) -> gym.Env:
    """One game through gymnasium's wrappers with ``preprocessing``; ``video``: the keyword
    arguments of a ``RecordVideo`` that films the emulator's screen, under the wrappers."""
    register()
    p = preprocessing
    env = gym.make(env_id, frameskip=1, repeat_action_probability=p.sticky_actions,
                   render_mode="rgb_array" if video else None)
    if video:
        env = gym.wrappers.RecordVideo(env, **video)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=p.noop_max, frame_skip=p.frame_skip,
                                          screen_size=p.screen_size, grayscale_obs=True)
    return gym.wrappers.FrameStackObservation(env, p.frame_stack)
