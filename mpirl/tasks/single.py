"""One environment on every rank (``--env-id``): what a rank trains, and the pieces it trains with.

:class:`~mpirl.tasks.multi.MultiTask` (``--tasks``) answers the same questions with its own
pieces, so a trainer asks them the same way either way and never branches on --tasks.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from mpirl import faults
from mpirl.comm.world import World
from mpirl.config import Config
from mpirl.envs.atari import Preprocessing
from mpirl.envs.episodes import EpisodeStats, allreduce_episode_stats
from mpirl.envs.evaluate import Evaluator
from mpirl.envs.make import make_vec, normalizer_for
from mpirl.envs.normalize import RewardScaler
from mpirl.envs.vec import VecEnv
from mpirl.models import network
from mpirl.models.actor_critic import ActorCritic
from mpirl.models.popart import IdentityValueNorm
from mpirl.models.qnet import QNetwork
from mpirl.replay.buffer import transition_dtype


class SingleTask:
    training = True      # this rank collects and trains (multi-task: unless its task is parked)
    record_task = None   # the task id replay records carry (multi-task: this rank's task)

    def __init__(self, cfg: Config, world: World):
        self.cfg, self.world = cfg, world
        self.env_id, self.group = cfg.env_id, world   # group: the ranks that share statistics
        self.ranks_training = world.size

    # -- what a rank acts in ---------------------------------------------------------------------
    def make_envs(self, seed: int, replay: bool = False) -> VecEnv:
        """This rank's vector env, its observation normaliser and (--normalize-reward) its
        reward scaler. (``replay``: the normaliser also serves replayed observations; the same
        one here.)"""
        return make_rank_envs(self.cfg, self.env_id, self.world, seed)

    def make_evaluator(self, seed: int) -> Evaluator:
        return Evaluator(self.world, self.env_id, self.cfg.eval_episodes, seed,
                         mode=self.cfg.vector_mode, preprocessing=Preprocessing.of(self.cfg))

    # -- the networks ----------------------------------------------------------------------------
    def network(self, envs: VecEnv) -> ActorCritic | QNetwork:
        """PPO's actor-critic or DQN's Q-network."""
        return network(self.cfg, envs.normalizer.out_dim, envs.single_action_space)

    def transition_dtype(self, envs: VecEnv) -> np.dtype:
        space = envs.single_action_space
        return transition_dtype(envs.single_observation_space.shape,
                                action_shape=space.shape if isinstance(space, gym.spaces.Box)
                                else ())

    def value_norm(self, model) -> IdentityValueNorm:
        return IdentityValueNorm()   # (multi-task: PopArt per task)

    # -- what is averaged over which ranks ---------------------------------------------------
    def weighted_sync(self, sync, grads, model, optimizer):
        return sync   # every gradient is the plain mean over ranks (multi-task: weighted)

    def allreduce_transition_weights(self, records: np.ndarray) -> float:
        return 1.0    # every replayed transition counts the same (multi-task: by its task)

    def allreduce_episode_stats(self, stats: EpisodeStats) -> dict:
        """The update's training episodes, pooled over every rank."""
        return allreduce_episode_stats(self.world, *stats.drain())

    def summary(self) -> dict:
        return {}


def make_rank_envs(cfg: Config, env_id: str, world: World, seed: int) -> VecEnv:
    """A rank's vector env of ``env_id``: its observation normaliser (pixels: none, uint8 to the
    network), its reward scaler (--normalize-reward) and sign (--sign-rewards). Multi-task runs
    over Atari games take theirs here too."""
    # (Atari's C++ vector env: threads within the rank's share of the cores)
    envs = make_vec(env_id, cfg.num_envs, cfg.vector_mode, threads=torch.get_num_threads(),
                    preprocessing=Preprocessing.of(cfg))
    normalizer = normalizer_for(envs.single_observation_space, cfg.normalize_obs, cfg.clip_obs)
    scaler = (RewardScaler(cfg.num_envs, cfg.gamma, clip=cfg.clip_reward)
              if cfg.normalize_reward else None)
    return VecEnv(envs, seed, normalizer, scaler, step_delay_s=faults.step_delay_s(world.world_rank),
                  sign_rewards=cfg.sign_rewards)
