"""Multi-task runs (``--tasks A,B`` or ``--tasks A:4,B:2``): one agent, one task per rank.

    tasks      parsed from --tasks; ranks assigned round-robin, or in proportion to given weights
    groups     ranks of one task share a sub-communicator (``world.split(color=task)``) for
               task-local statistics: observation normaliser, advantages, episodes, evaluation
    envs       each rank steps its own task; observations are normalised with the task's
               statistics, zero-padded to the widest task and tagged with a task one-hot
               (Atari games, PPO: every game's frame stacks as they are, uint8)
    model      shared trunk + per-task heads, invalid actions masked (mpirl.models.multitask):
               policy and value heads (PPO) or Q heads (DQN); over Atari games the trunk is
               the Nature CNN and each game's heads cover its minimal action set
    gradients  trunk: task-weighted mean, heads: mean over their task's ranks, in the same single
               Allreduce (mpirl.tasks.sync); DQN, whose replayed batches mix tasks, weighs
               each transition by its task and each head by its task's share of the batch
    replay     (DQN) records carry their task id and the raw observation padded to the widest
               task; every rank holds every task's observation statistics to normalise them
    PopArt     (PPO) per-task value statistics (mpirl.models.popart); updated with one world
               Allreduce of a (K, 3) array, because every rank holds -- and rescales -- every
               value head
    solved     each task against its own target, on the run's scoreboard (mpirl.scoreboard);
               the run is solved when every task is
    parked     (--park-solved-tasks) a task whose evaluation reached its target stops collecting
               and training; its ranks enter every collective with zero weight and a zero
               gradient (the weights renormalised over the tasks still training), waiting
               without spinning, keep evaluating, and train again if an evaluation falls below
               the target. The scoreboard decides; the task's sync and PopArt follow it.

:class:`MultiTask` is what the PPO and DQN trainers ask for these pieces (the same questions as
:class:`~mpirl.tasks.single.SingleTask`). Parsing, rank assignment and the checks made before
training are in mpirl.tasks.spec (torch-free); the pieces themselves in mpirl.tasks.pieces.
"""
from __future__ import annotations

import numpy as np

from mpirl import faults
from mpirl.comm.collectives import allreduce_sum
from mpirl.comm.world import World
from mpirl.config import Config
from mpirl.envs.atari import Preprocessing
from mpirl.envs.episodes import EpisodeStats, allreduce_episode_stats
from mpirl.envs.make import make_vec
from mpirl.envs.vec import VecEnv
from mpirl.models import network
from mpirl.models.multitask import MultiTaskActorCritic, MultiTaskQNetwork
from mpirl.replay.buffer import transition_dtype
from mpirl.scoreboard import Scoreboard
from mpirl.tasks.pieces import TaskEvaluator, TaskObsNormalizer, TaskValueNorm
from mpirl.tasks.single import make_rank_envs
from mpirl.tasks.spec import assign_tasks, parse_tasks, task_spaces
from mpirl.tasks.sync import TaskWeightedSync


class MultiTask:
    """This rank's place in a multi-task run: ``task`` (index), ``env_id``, ``group`` (the task's
    sub-world), ``counts`` (ranks per task), and the pieces it trains with.

    With --park-solved-tasks the run's scoreboard parks a task whose latest evaluation reached its
    target: its ranks sit the updates out (``training`` is False there; the trainer then collects
    nothing and enters the collectives with an empty batch and a zero gradient) until an
    evaluation falls below the target again.
    """

    def __init__(self, cfg: Config, world: World, scoreboard: Scoreboard, log=print):
        tasks = parse_tasks(cfg.tasks)
        self.cfg, self.world, self.scoreboard = cfg, world, scoreboard
        self.ids = [env_id for env_id, _ in tasks]
        self.assignment = assign_tasks(world.size, [w for _, w in tasks])
        self.counts = [self.assignment.count(k) for k in range(len(self.ids))]
        self.task = self.assignment[world.rank]
        self.env_id = self.ids[self.task]
        self.group = world.split(color=self.task)
        self.preprocessing = Preprocessing.of(cfg)
        self.obs_dims, self.action_counts = zip(*(task_spaces(i, self.preprocessing)
                                                  for i in self.ids))
        # Atari games (the checks admit all or none): one frame-stack shape, not padded
        self.pixels = isinstance(self.obs_dims[0], tuple)
        self.width = self.obs_dims[0] if self.pixels else max(self.obs_dims)
        self._sync: TaskWeightedSync | None = None
        self.popart_applies = cfg.algo == "ppo"  # PopArt normalises PPO's value heads
        log("tasks: " + ", ".join(
            f"{i} ({n} rank{'s' * (n > 1)}, target {t})"
            for i, n, t in zip(self.ids, self.counts, scoreboard.targets))
            + f"; weighting {cfg.task_weighting}"
            + (f", PopArt {'on' if cfg.popart else 'off'}" if self.popart_applies else "")
            + ("; solved tasks parked" if scoreboard.park else ""))

    @property
    def record_task(self) -> int:
        """The task id this rank's replay records carry."""
        return self.task

    @property
    def training(self) -> bool:
        """Whether this rank collects and trains in the coming update (its task not parked)."""
        return not self.scoreboard.parked[self.task]

    @property
    def ranks_training(self) -> int:
        """How many ranks collect and train (at least 1, so that a mean over them is defined)."""
        parked = self.scoreboard.parked
        return max(sum(n for n, p in zip(self.counts, parked) if not p), 1)

    # -- what a rank acts in ---------------------------------------------------------------------
    def make_envs(self, seed: int, replay: bool = False) -> VecEnv:
        """This rank's vector env, its observations normalised with its task's statistics,
        padded to the widest task and tagged with the task's one-hot. ``replay``: the
        normaliser also holds every other task's statistics (DQN: replayed batches mix tasks).
        An Atari game's frames go to the network as a single task's do (uint8, no statistics,
        no tag: the rank's heads are its game's)."""
        if self.pixels:
            return make_rank_envs(self.cfg, self.env_id, self.world, seed)
        normalizer = TaskObsNormalizer(self.obs_dims[self.task], self.width, self.task, self.ids,
                                       self.world, enabled=self.cfg.normalize_obs,
                                       all_tasks=replay, obs_dims=list(self.obs_dims),
                                       clip=self.cfg.clip_obs)
        return VecEnv(make_vec(self.env_id, self.cfg.num_envs, self.cfg.vector_mode), seed,
                      normalizer, step_delay_s=faults.step_delay_s(self.world.world_rank))

    def make_evaluator(self, seed: int) -> TaskEvaluator:
        return TaskEvaluator(self.world, self.group, self.task, len(self.ids), self.env_id,
                             self.cfg.eval_episodes, seed, self.cfg.vector_mode,
                             self.preprocessing)

    # -- the networks (the padded width and every task's action count are known already) ------
    def network(self, envs: VecEnv) -> MultiTaskActorCritic | MultiTaskQNetwork:
        """PPO's actor-critic or DQN's Q-network: a shared trunk and every task's head."""
        return network(self.cfg, self.width, None, self.action_counts, self.task)

    def transition_dtype(self, envs: VecEnv) -> np.dtype:
        """Replay records of every task: raw observations padded to the widest task, and the
        task id (one dtype, so records of all tasks share memories and messages)."""
        return transition_dtype((self.width,), task=True)

    def value_norm(self, model: MultiTaskActorCritic) -> TaskValueNorm:
        value_norm = TaskValueNorm(self.world, self.task, model, learn=self.cfg.popart)
        self.scoreboard.on_parking(value_norm.set_parked)
        return value_norm

    # -- what is averaged over which ranks ---------------------------------------------------
    def weighted_sync(self, sync, grads, model, optimizer) -> TaskWeightedSync:
        """``sync`` with each rank's gradient segments weighted by task (mpirl.tasks.sync)."""
        self._sync = TaskWeightedSync(sync, grads, model.owner(), self.task, self.counts,
                                      self.cfg.task_weighting, optimizer)
        self.scoreboard.on_parking(self._sync.set_parked)
        return self._sync

    def allreduce_transition_weights(self, records: np.ndarray) -> np.ndarray:
        """DQN: this rank's slice of a global batch that mixes tasks -> each transition's weight
        in the loss (B,) float32; the heads' scales follow (TaskWeightedSync.weigh_batch).
        Collective: one Allreduce of the K per-task counts of the global batch."""
        task = np.asarray(records["task"], np.int64)
        counts = allreduce_sum(self.world, np.bincount(task, minlength=len(self.ids)))
        weights = self._sync.weigh_batch(counts)
        return weights[task].astype(np.float32)

    def allreduce_episode_stats(self, stats: EpisodeStats) -> dict:
        """Per-task training episode statistics (``<task>/episode_return_mean``, ...), pooled
        over each task's group; every rank gets every task's."""
        mine = allreduce_episode_stats(self.group, *stats.drain())
        every = self.world.allgather_obj(mine if self.group.is_root else None)
        by_task = {self.assignment[r]: s for r, s in enumerate(every) if s is not None}
        return {f"{env_id}/{key}": value for k, env_id in enumerate(self.ids)
                for key, value in by_task[k].items()}

    def summary(self) -> dict:
        """The multi-task part of summary.json."""
        return {"env_id": ",".join(self.ids), "task_weighting": self.cfg.task_weighting,
                "popart": self.cfg.popart and self.popart_applies,
                "park_solved_tasks": self.scoreboard.park,
                "tasks": self.scoreboard.tasks_summary()}
