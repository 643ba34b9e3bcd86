"""Evaluation: deterministic episodes split over the ranks, their mean return agreed by all."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from mpirl.comm.collectives import allreduce_sum
from mpirl.comm.world import World
from mpirl.envs.atari import Preprocessing, is_atari, preprocessed
from mpirl.envs.make import clip_to_space, make_vec


class Evaluator:
    """Runs ``episodes`` evaluation episodes split over the ranks, with a deterministic policy.

    Each rank keeps its own vector env (one sub-env per episode it runs), re-seeded identically
    for every evaluation so evaluations are comparable across updates. The ranks' episodes are
    consecutive slices of ``episodes`` global ones, and a rank's env is reset with ``seed`` plus
    the global index of its first episode, so no two ranks run the same episodes: sync/async
    envs seed sub-env ``i`` with ``seed + offset + i`` (episode ``k`` always gets ``seed + k``,
    whatever the rank count), and native vector envs (one RNG for all sub-envs, e.g. CartPole's)
    draw every rank's start states from a different seed.
    """

    def __init__(self, world: World, env_id: str, episodes: int, seed: int, mode: str = "auto",
                 video: str | None = None, preprocessing: Preprocessing = Preprocessing()):
        self.world = world
        base, extra = divmod(episodes, world.size)
        self.local = base + (1 if world.rank < extra else 0)
        self.offset = world.rank * base + min(world.rank, extra)  # global index of 1st episode
        self.seed = seed + self.offset
        if not self.local:
            self.envs = None
        elif video:
            self.envs = recording_envs(env_id, self.offset, self.local, video, preprocessing)
        else:
            self.envs = make_vec(env_id, self.local, mode, preprocessing=preprocessing)
        # each episode's reset seed: its own in sync/async envs, the rank's in a native one
        self.native = self.envs is not None and not isinstance(
            self.envs, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv))

    def run_across_ranks(self, act, observe=None) -> float:
        """Mean return over all ranks' episodes (collective). ``observe(obs)`` turns the env's
        observations into the network's (e.g. a normaliser's ``normalize``), ``act(x) ->
        actions``. This rank's episodes stay in ``returns`` and ``lengths``."""
        self.returns = np.zeros(self.local, np.float64)
        self.lengths = np.zeros(self.local, np.int64)
        if self.local:
            obs, _ = self.envs.reset(seed=self.seed)
            running = np.ones(self.local, bool)
            while running.any():
                x = observe(obs) if observe else obs.astype(np.float32)
                actions = clip_to_space(act(x), self.envs.single_action_space)
                obs, reward, term, trunc, _ = self.envs.step(actions)
                self.returns += reward * running
                self.lengths += running
                running &= ~(term | trunc)
        n, total = allreduce_sum(self.world, [self.local, self.returns.sum()])
        return float(total / max(n, 1.0))

    def seeds(self) -> list[int]:
        """Every episode's reset seed, in global order (a native vector env draws all its
        episodes from one seed: the rank's)."""
        mine = [self.seed if self.native else self.seed + i for i in range(self.local)]
        return [s for rank in self.world.allgather_obj(mine) for s in rank]

    def gather_episodes(self) -> tuple[list[float], list[int]]:
        """Every rank's episodes of the last run, in their global order: (returns, lengths)."""
        every = self.world.allgather_obj((self.returns.tolist(), self.lengths.tolist()))
        return ([r for returns, _ in every for r in returns],
                [n for _, lengths in every for n in lengths])

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()


def recording_envs(env_id: str, first: int, count: int, folder: str,
                   preprocessing: Preprocessing = Preprocessing()) -> gym.vector.VectorEnv:
    """``count`` envs that render and record their first episode each, as
    ``<folder>/<env>-episode-<k>-episode-0.mp4`` for global episode k = first, first + 1, ...
    (Atari: the emulator's screen, under the ``preprocessing`` the agent sees through.)"""
    def make(k: int):
        video = dict(video_folder=folder, name_prefix=f"{env_id.replace('/', '_')}-episode-{k}",
                     episode_trigger=lambda episode: episode == 0, disable_logger=True)

        def env():
            if is_atari(env_id):
                return preprocessed(env_id, preprocessing, video)
            return gym.wrappers.RecordVideo(gym.make(env_id, render_mode="rgb_array"), **video)
        return env
    return gym.vector.SyncVectorEnv([make(first + i) for i in range(count)])
