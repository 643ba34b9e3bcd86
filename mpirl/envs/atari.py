"""Atari from the Arcade Learning Environment (``ALE/<Game>-v5`` ids, the ``atari`` extra).

The standard preprocessing (Mnih et al. 2015; Machado et al. 2018 for what v5 changes): frame
skip 4 with the last two frames max-pooled, 84x84 grayscale, a stack of the last 4, up to 30
no-op starts, FIRE pressed at reset in games that need it, whole games (no end at a lost life),
sticky actions off as in CleanRL's and rl-zoo's v5 settings, full action space off.
Observations stay uint8 (N, 4, 84, 84) from the emulator to the network.

``vector_mode``: ``auto``/``native`` is ale-py's threaded C++ vector env (``AtariVectorEnv``),
its threads capped at the rank's share of the cores; ``sync``/``async`` are gymnasium's vector
envs of ``AtariPreprocessing`` + ``FrameStackObservation`` with the same settings but the FIRE
at reset (gymnasium has no wrapper for it). Rewards come
unclipped from both, so that episode returns are real game scores; the learner clips them
(``--sign-rewards``).
"""
from __future__ import annotations

import gymnasium as gym

from mpirl.errors import ConfigError

FRAME_SKIP, SIZE, STACK, NOOP_MAX = 4, 84, 4, 30


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


def make_atari_vec(env_id: str, num_envs: int, mode: str = "auto",
                   threads: int = 1) -> gym.vector.VectorEnv:
    """``num_envs`` preprocessed copies of the game (see the module's docstring)."""
    register()
    if mode in ("auto", "native"):
        from ale_py.vector_env import AtariVectorEnv
        return Int32Seeds(AtariVectorEnv(
            game_of(env_id), num_envs, num_threads=max(1, threads), frameskip=FRAME_SKIP,
            img_height=SIZE, img_width=SIZE, stack_num=STACK, noop_max=NOOP_MAX,
            episodic_life=False, reward_clipping=False, use_fire_reset=True,
            repeat_action_probability=0.0, autoreset_mode="NextStep"))

    def one():
        env = gym.make(env_id, frameskip=1, repeat_action_probability=0.0)
        env = gym.wrappers.AtariPreprocessing(env, noop_max=NOOP_MAX, frame_skip=FRAME_SKIP,
                                              screen_size=SIZE, grayscale_obs=True)
        return gym.wrappers.FrameStackObservation(env, STACK)

    vector = gym.vector.AsyncVectorEnv if mode == "async" else gym.vector.SyncVectorEnv
    return vector([one for _ in range(num_envs)])
