"""Multi-task runs (``--tasks A,B`` or ``--tasks A:4,B:2``): one agent, one task per rank.

    tasks      parsed from --tasks; ranks assigned round-robin, or in proportion to given weights
    groups     ranks of one task share a sub-communicator (``world.split(color=task)``) for
               task-local statistics: observation normaliser, advantages, episodes, evaluation
    envs       each rank steps its own task; observations are normalised with the task's
               statistics, zero-padded to the widest task and tagged with a task one-hot
    model      shared trunk + per-task heads, invalid actions masked (mpirl.models.multitask):
               policy and value heads (PPO) or Q heads (DQN)
    gradients  trunk: task-weighted mean, heads: mean over their task's ranks, in the same single
               Allreduce (mpirl.comm.task_sync); DQN, whose replayed batches mix tasks, weighs
               each transition by its task and each head by its task's share of the batch
    replay     (DQN) records carry their task id and the raw observation padded to the widest
               task; every rank holds every task's observation statistics to normalise them
    PopArt     (PPO) per-task value statistics (mpirl.models.popart); updated with one world
               Allreduce of a (K, 3) array, because every rank holds -- and rescales -- every
               value head
    solved     each task against its own target; the run is solved when every task is
    parked     (--park-solved-tasks) a task whose evaluation reached its target stops collecting
               and training; its ranks enter every collective with zero weight and a zero
               gradient (the weights renormalised over the tasks still training), waiting
               without spinning, keep evaluating, and train again if an evaluation falls below
               the target

:class:`MultiTask` is what the PPO and DQN trainers ask for these pieces. Parsing, rank
assignment and the checks made before training are in mpirl.taskspec (torch-free).
"""
from __future__ import annotations

import numpy as np
import torch

from mpirl.config import Config
from mpirl.comm.collectives import allreduce_sum
from mpirl.comm.task_sync import TaskWeightedSync, allreduce_sum_nonblocking
from mpirl.comm.world import World
from mpirl.envs.episodes import EpisodeStats, allreduce_episode_stats
from mpirl.envs.evaluate import Evaluator
from mpirl.envs.normalize import ObsNormalizer, RunningMeanStd
from mpirl.models.actor_critic import ActorCritic
from mpirl.models.multitask import MultiTaskActorCritic, MultiTaskQNetwork
from mpirl.models.popart import IdentityValueNorm
from mpirl.models.qnet import QNetwork
from mpirl.replay.buffer import transition_dtype
from mpirl.envs.make import default_target
from mpirl.taskspec import assign_tasks, parse_targets, parse_tasks, task_spaces


def pad_and_tag(obs: np.ndarray, width: int, task: int, num_tasks: int) -> np.ndarray:
    """(B, d) observations -> (B, width + K) float32: zero-padded to ``width``, then the one-hot
    of ``task``."""
    out = np.zeros((len(obs), width + num_tasks), np.float32)
    out[:, :obs.shape[1]] = obs
    out[:, width + task] = 1.0
    return out


# -- the pieces a trainer swaps in ----------------------------------------------------------------
class TaskObsNormalizer(ObsNormalizer):
    """This task's observation normaliser; its output padded and tagged (``out_dim`` wide).

    ``allreduce_statistics`` is given the task's group, so statistics are those of the task's ranks only.
    ``state_dict`` is collective (every rank calls it, as at a checkpoint): it holds every task's
    statistics, so rank 0's checkpoint restores all of them.

    ``every_task`` (DQN, whose replayed batches mix tasks): every rank also holds every other
    task's statistics, to normalise replayed observations of any task
    (:meth:`normalize_replayed`). ``allreduce_statistics`` then sums one (K, 1 + 2D) array over the whole world,
    each rank filling its task's row, and every rank merges every row (the task's own statistics
    are still those of its ranks' observations only).
    """

    def __init__(self, obs_dim: int, width: int, task: int, task_ids: list[str], world: World,
                 enabled: bool = True, every_task: bool = False,
                 obs_dims: list[int] | None = None):
        self.width, self.task, self.task_ids, self.world = width, task, task_ids, world
        self.every_task = every_task
        super().__init__((obs_dim,), enabled=enabled)
        self.out_dim = width + len(task_ids)
        if every_task:
            dims = list(obs_dims) if obs_dims is not None else None
            if dims is None or len(dims) != len(task_ids) or dims[task] != obs_dim:
                raise ValueError("every_task needs every task's observation width (obs_dims)")
            self.obs_dims = dims
            self.every = [self.rms if k == task else RunningMeanStd((d,))
                          for k, d in enumerate(dims)]
            self._refresh()

    def __call__(self, obs: np.ndarray, accumulate: bool = True) -> np.ndarray:
        return pad_and_tag(super().__call__(obs, accumulate), self.width, self.task,
                           len(self.task_ids))

    def _refresh(self):
        super()._refresh()
        if not getattr(self, "every_task", False) or not hasattr(self, "every"):
            return
        # every task's statistics as (K, D) tables; padding columns map 0 to 0
        self._means = np.zeros((len(self.every), self.width), np.float32)
        self._inv_stds = np.ones((len(self.every), self.width), np.float32)
        for k, rms in enumerate(self.every):
            d = rms.mean.shape[0]
            self._means[k, :d] = rms.mean.astype(np.float32)
            self._inv_stds[k, :d] = (1.0 / np.sqrt(rms.var + 1e-8)).astype(np.float32)

    def for_replay(self, raw: np.ndarray) -> np.ndarray:
        """Raw observations zero-padded to the widest task, float32 (B, D): one record dtype for
        the transitions of every task."""
        out = np.zeros((len(raw), self.width), np.float32)
        out[:, :raw.shape[1]] = raw
        return out

    def normalize_replayed(self, obs: np.ndarray, task: np.ndarray | None = None) -> np.ndarray:
        """Stored (padded, raw) observations of any tasks (``task``: (B,) each row's task) ->
        (B, D + K), every row normalised with its own task's statistics, tagged with its one-hot:
        for a row of this rank's task, what acting gave (other tasks need ``every_task``)."""
        task = np.full(len(obs), self.task) if task is None else np.asarray(task, np.int64)
        out = np.zeros((len(obs), self.out_dim), np.float32)
        if not self.enabled:
            out[:, :self.width] = obs
        else:
            if not self.every_task:
                raise ValueError("normalising other tasks' observations needs every_task=True")
            out[:, :self.width] = np.clip((obs - self._means[task]) * self._inv_stds[task],
                                          -self.clip, self.clip)
        out[np.arange(len(obs)), self.width + task] = 1.0
        return out

    def allreduce_statistics(self, world: World) -> None:
        if not self.every_task:
            return super().allreduce_statistics(world)
        if not self.enabled:
            return
        # (the world, whatever ``world`` is given: every task's row goes to every rank)
        D, d = self.width, self.rms.mean.shape[0]
        rows = np.zeros((len(self.every), 1 + 2 * D))
        rows[self.task, 0] = self._pending_count
        rows[self.task, 1:1 + d] = self._pending[0]
        rows[self.task, 1 + D:1 + D + d] = self._pending[1]
        total = allreduce_sum(self.world, rows).reshape(rows.shape)
        for k, rms in enumerate(self.every):
            dk = self.obs_dims[k]
            rms.merge(total[k, 0], total[k, 1:1 + dk], total[k, 1 + D:1 + D + dk])
        self._pending[:] = 0.0
        self._pending_count = 0
        self._refresh()

    def state_dict(self) -> dict:
        every = self.world.allgather_obj((self.task_ids[self.task], super().state_dict()))
        return dict(every)

    def load_state_dict(self, state: dict) -> None:
        if self.every_task:
            for task_id, rms in zip(self.task_ids, self.every):
                rms.load_state_dict(state[task_id])
        super().load_state_dict(state[self.task_ids[self.task]])


class TaskValueNorm:
    """PopArt in the PPO update: value-head outputs <-> returns, with this rank's task's statistics.

    ``update`` is collective: each rank puts its task's (count, sum, sum of squares) of returns in
    its row of a (K, 3) array, one Allreduce sums them, and every rank applies the same update and
    head rescale (replicas stay identical). With ``learn=False`` (--no-popart) the statistics
    stay at mean 0, std 1 and the heads speak in return units.

    ``parked`` (set by MultiTask): the tasks that train no more. A parked task's ranks fill a
    zero row (count 0: the statistics of the task stay as they are); while any task is parked
    the Allreduce is non-blocking, and parked ranks wait for it without spinning (they arrive
    a whole rollout early).
    """

    def __init__(self, world: World, task: int, model: MultiTaskActorCritic, learn: bool):
        self.world, self.task, self.model, self.learn = world, task, model, learn
        self.parked = [False] * model.num_tasks

    def denormalize_(self, values: np.ndarray) -> np.ndarray:
        values[...] = self.model.popart.denormalize(torch.from_numpy(values), self.task).numpy()
        return values

    def update(self, b_values: torch.Tensor, b_returns: torch.Tensor):
        if self.learn:
            rows = np.zeros((self.model.num_tasks, 3))
            r = b_returns.double()
            rows[self.task] = [len(r), float(r.sum()), float((r * r).sum())]
            if any(self.parked):
                batch = allreduce_sum_nonblocking(self.world, rows, idle=self.parked[self.task])
            else:
                batch = allreduce_sum(self.world, rows)
            batch = batch.reshape(-1, 3)
            self.model.popart.update(batch, self.model.value_layers())
        popart = self.model.popart
        return popart.normalize(b_values, self.task), popart.normalize(b_returns, self.task)


class TaskEvaluator:
    """Evaluates every task at once: each group runs its own task's episodes; ``run`` returns the
    mean over tasks and leaves the per-task means in ``returns`` (K,), identical on all ranks."""

    def __init__(self, world: World, group: World, task: int, num_tasks: int, env_id: str,
                 episodes: int, seed: int, mode: str):
        self.world, self.group, self.task = world, group, task
        self.own = Evaluator(group, env_id, episodes, seed=seed, mode=mode)
        self.returns = np.full(num_tasks, np.nan)

    def run(self, act, normalizer=None) -> float:
        mine = self.own.run(act, normalizer)
        row = np.zeros(len(self.returns))
        row[self.task] = mine if self.group.is_root else 0.0
        self.returns = allreduce_sum(self.world, row)
        return float(self.returns.mean())

    def close(self) -> None:
        self.own.close()


class SingleTask:
    """One environment on every rank: the plain case of the interface :class:`MultiTask` offers,
    so the trainer asks the same questions either way and never branches on --tasks."""

    training = True  # this rank collects and trains (multi-task: unless its task is parked)

    def __init__(self, cfg: Config, world: World, run):
        self.cfg, self.world = cfg, world
        self.env_id, self.group = cfg.env_id, world
        self.ranks_training = world.size

    def normalizer(self, obs_dim: int, every_task: bool = False) -> ObsNormalizer:
        return ObsNormalizer((obs_dim,), enabled=self.cfg.normalize_obs)

    def make_evaluator(self, seed: int) -> Evaluator:
        return Evaluator(self.world, self.env_id, self.cfg.eval_episodes, seed,
                         mode=self.cfg.vector_mode)

    def model(self, obs_dim: int, action_space) -> ActorCritic:
        return ActorCritic(obs_dim, action_space, self.cfg.hidden_sizes)

    def q_network(self, obs_dim: int, n_actions: int) -> QNetwork:
        return QNetwork(obs_dim, n_actions, self.cfg.hidden_sizes, self.cfg.dueling)

    def transition_dtype(self, obs_dim: int) -> np.dtype:
        return transition_dtype((obs_dim,))

    def tag(self, records: np.ndarray) -> np.ndarray:
        return records  # (multi-task: each record's task id)

    def weighted_sync(self, sync, grads, model, optimizer=None):
        return sync  # every gradient is the plain mean over ranks

    def sample_weights(self, records: np.ndarray) -> float:
        return 1.0  # every replayed transition counts the same

    def value_norm(self, model) -> IdentityValueNorm:
        return IdentityValueNorm()

    def episode_stats(self, stats: EpisodeStats) -> dict:
        return allreduce_episode_stats(self.world, *stats.drain())

    def reached_target_in_training(self) -> bool:
        return False  # the run's own target check covers the single task

    def record_eval(self, record: dict, global_step: int) -> None:
        pass

    def summary(self) -> dict | None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def make_tasks(cfg: Config, world: World, run) -> "SingleTask | MultiTask":
    """What this rank trains: the one --env-id, or its share of --tasks."""
    return MultiTask(cfg, world, run) if cfg.tasks else SingleTask(cfg, world, run)


class MultiTask:
    """This rank's place in a multi-task run, and the per-task bookkeeping of the run.

    Built on every rank after configure(): ``task`` (index), ``env_id``, ``group`` (the task's
    sub-world), ``counts`` (ranks per task), ``targets``. Takes over the run's "solved": the
    run is solved when every task with a target has reached it.

    With --park-solved-tasks, ``parked[k]`` says that task k's latest evaluation reached its
    target: its ranks sit the updates out (``training`` is False there; the trainer then
    collects nothing and enters the collectives with an empty batch and a zero gradient) until
    an evaluation falls below the target again. Every rank holds the same evaluation returns,
    so every rank changes ``parked`` at the same evaluation, as the collectives need.
    """

    def __init__(self, cfg: Config, world: World, run):
        tasks = parse_tasks(cfg.tasks)
        self.cfg, self.world, self.run = cfg, world, run
        self.ids = [env_id for env_id, _ in tasks]
        self.assignment = assign_tasks(world.size, [w for _, w in tasks])
        self.counts = [self.assignment.count(k) for k in range(len(self.ids))]
        self.task = self.assignment[world.rank]
        self.env_id = self.ids[self.task]
        self.group = world.split(color=self.task)
        self.obs_dims, self.action_counts = zip(*(task_spaces(i) for i in self.ids))
        self.width = max(self.obs_dims)
        given = parse_targets(cfg.task_targets, self.ids)
        self.targets = [given.get(i, default_target(i)) for i in self.ids]
        self.solved_at_step: list[int | None] = [None] * len(self.ids)
        self.solved_at_time_s: list[float | None] = [None] * len(self.ids)
        self.train_returns: list[float | None] = [None] * len(self.ids)  # latest known
        self.latest_train_returns: list[float | None] = [None] * len(self.ids)  # this update's
        self.park = bool(cfg.park_solved_tasks)
        self.parked = [False] * len(self.ids)
        self.parked_at_steps: list[list[int]] = [[] for _ in self.ids]
        self.resumed_at_steps: list[list[int]] = [[] for _ in self.ids]
        self.env_steps: list[int] | None = None  # per task: steps its ranks took (first update)
        self._sync: TaskWeightedSync | None = None
        self._value_norm: TaskValueNorm | None = None
        self.evaluator: TaskEvaluator | None = None
        run.target = None  # "solved" is per task here (record_eval)
        self.popart_applies = cfg.algo == "ppo"  # PopArt normalises PPO's value heads
        run.log.print("tasks: " + ", ".join(
            f"{i} ({n} rank{'s' * (n > 1)}, target {t})"
            for i, n, t in zip(self.ids, self.counts, self.targets))
            + f"; weighting {cfg.task_weighting}"
            + (f", PopArt {'on' if cfg.popart else 'off'}" if self.popart_applies else "")
            + ("; solved tasks parked" if self.park else ""))

    # -- construction ------------------------------------------------------------------------
    def normalizer(self, obs_dim: int, every_task: bool = False) -> TaskObsNormalizer:
        """(``obs_dim``: this rank's env's width; the task's own is known already.)
        ``every_task``: also hold the other tasks' statistics (DQN: replayed batches mix tasks)."""
        return TaskObsNormalizer(self.obs_dims[self.task], self.width, self.task, self.ids,
                                 self.world, enabled=self.cfg.normalize_obs,
                                 every_task=every_task, obs_dims=list(self.obs_dims))

    def make_evaluator(self, seed: int) -> TaskEvaluator:
        self.evaluator = TaskEvaluator(self.world, self.group, self.task, len(self.ids),
                                       self.env_id, self.cfg.eval_episodes, seed,
                                       self.cfg.vector_mode)
        return self.evaluator

    def model(self, obs_dim: int, action_space) -> MultiTaskActorCritic:
        """(The padded width and every task's action count are known already.)"""
        model = MultiTaskActorCritic(self.width, list(self.action_counts), self.cfg.hidden_sizes,
                                     popart_beta=self.cfg.popart_beta)
        model.task = self.task
        return model

    def q_network(self, obs_dim: int, n_actions: int) -> MultiTaskQNetwork:
        """(The padded width and every task's action count are known already.)"""
        return MultiTaskQNetwork(self.width, list(self.action_counts), self.cfg.hidden_sizes,
                                 self.cfg.dueling)

    def transition_dtype(self, obs_dim: int) -> np.dtype:
        """Replay records of every task: raw observations padded to the widest task, and the
        task id (one dtype, so records of all tasks share memories and messages)."""
        return transition_dtype((self.width,), task=True)

    def tag(self, records: np.ndarray) -> np.ndarray:
        """This rank's new replay records, marked as its task's."""
        records["task"] = self.task
        return records

    def weighted_sync(self, sync, grads, model, optimizer=None) -> TaskWeightedSync:
        self._sync = TaskWeightedSync(sync, grads, model.owner(), self.task, self.counts,
                                      self.cfg.task_weighting, optimizer)
        self._sync.set_parked(self.parked)
        return self._sync

    def sample_weights(self, records: np.ndarray) -> np.ndarray:
        """DQN: this rank's slice of a global batch that mixes tasks -> each transition's weight
        in the loss (B,) float32; the heads' scales follow (TaskWeightedSync.weigh_batch).
        Collective: one Allreduce of the K per-task counts of the global batch."""
        task = np.asarray(records["task"], np.int64)
        counts = allreduce_sum(self.world, np.bincount(task, minlength=len(self.ids)))
        weights = self._sync.weigh_batch(counts)
        return weights[task].astype(np.float32)

    def value_norm(self, model: MultiTaskActorCritic) -> TaskValueNorm:
        self._value_norm = TaskValueNorm(self.world, self.task, model, learn=self.cfg.popart)
        self._value_norm.parked = list(self.parked)
        return self._value_norm

    # -- parking -----------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        """Whether this rank collects and trains in the coming update (its task not parked)."""
        return not self.parked[self.task]

    @property
    def ranks_training(self) -> int:
        """How many ranks collect and train (at least 1, so that a mean over them is defined)."""
        return max(sum(n for n, parked in zip(self.counts, self.parked) if not parked), 1)

    def _set_parked(self, parked: list[bool]) -> None:
        self.parked = [bool(p) for p in parked]
        if self._sync is not None:
            self._sync.set_parked(self.parked)
        if self._value_norm is not None:
            self._value_norm.parked = list(self.parked)

    def _update_parking(self, global_step: int) -> None:
        """After an evaluation: park the tasks at or above their target, unpark those below."""
        returns = self.evaluator.returns
        now = [target is not None and bool(returns[k] >= target)
               for k, target in enumerate(self.targets)]
        if now == self.parked:
            return
        for k, env_id in enumerate(self.ids):
            n, value, target = self.counts[k], float(returns[k]), self.targets[k]
            if now[k] and not self.parked[k]:
                self.parked_at_steps[k].append(global_step)
                self.run.log.print(f"  parked {env_id} at step {global_step:,} (eval {value:.1f}"
                                   f" >= target {target:g}): its {n} rank{'s' * (n > 1)} stop "
                                   "collecting and training")
            elif self.parked[k] and not now[k]:
                self.resumed_at_steps[k].append(global_step)
                self.run.log.print(f"  {env_id} trains again from step {global_step:,} (eval "
                                   f"{value:.1f} < target {target:g})")
        if all(now) and not self.cfg.stop_on_solve:
            self.run.log.print("  every task is parked: updates only evaluate until an "
                               "evaluation falls below a target or the budget ends")
        self._set_parked(now)

    # -- bookkeeping ---------------------------------------------------------------------------
    def episode_stats(self, stats: EpisodeStats) -> dict:
        """Per-task training episode statistics (``<task>/episode_return_mean``, ...), pooled
        over each task's group; every rank gets every task's. Called once per update, it also
        counts each task's environment steps (and, with --park-solved-tasks, logs
        ``<task>/parked`` and ``<task>/env_steps``)."""
        mine = allreduce_episode_stats(self.group, *stats.drain())
        every = self.world.allgather_obj(mine if self.group.is_root else None)
        record = {}
        by_task = {self.assignment[r]: s for r, s in enumerate(every) if s is not None}
        self.latest_train_returns = [by_task[k].get("episode_return_mean") for k in
                                     range(len(self.ids))]
        per_rank = self.run.steps_per_update // self.world.size  # (PPO: T x E; DQN: freq x E)
        if self.env_steps is None:  # a fresh run, or a checkpoint from before per-task counts
            self.env_steps = [getattr(self.run, "start_update", 0) * per_rank * n
                              for n in self.counts]
        for k, env_id in enumerate(self.ids):
            record.update({f"{env_id}/{key}": value for key, value in by_task[k].items()})
            if self.latest_train_returns[k] is not None:
                self.train_returns[k] = self.latest_train_returns[k]
            if not self.parked[k]:
                self.env_steps[k] += per_rank * self.counts[k]
            if self.park:
                record[f"{env_id}/parked"] = self.parked[k]
                record[f"{env_id}/env_steps"] = self.env_steps[k]
        return record

    def reached_target_in_training(self) -> bool:
        """Whether an unsolved task's training episodes of this update reached its target: time
        for an evaluation (as single-task runs evaluate early)."""
        return any(target is not None and solved is None and value is not None and value >= target
                   for target, solved, value in zip(self.targets, self.solved_at_step,
                                                    self.latest_train_returns))

    def record_eval(self, record: dict, global_step: int) -> None:
        """Per-task evaluation returns and solved flags into ``record``; marks the run solved
        once every task with a target has reached it; with --park-solved-tasks, parks and
        unparks tasks (``<task>/parked``: for the updates that follow)."""
        for k, env_id in enumerate(self.ids):
            value, target = float(self.evaluator.returns[k]), self.targets[k]
            if target is not None and value >= target and self.solved_at_step[k] is None:
                self.solved_at_step[k], self.solved_at_time_s[k] = global_step, self.run.clock()
            record[f"{env_id}/eval_return_mean"] = value
            record[f"{env_id}/solved"] = self.solved_at_step[k] is not None
        if self.park:
            self._update_parking(global_step)
            for k, env_id in enumerate(self.ids):
                record[f"{env_id}/parked"] = self.parked[k]
        self.run.log.print("  eval by task: " + ", ".join(
            f"{env_id} {record[f'{env_id}/eval_return_mean']:.1f}"
            + (" (solved" + (", parked" if self.parked[k] else "") + ")"
               if record[f"{env_id}/solved"] else "") for k, env_id in enumerate(self.ids)))
        with_targets = [k for k, t in enumerate(self.targets) if t is not None]
        if (with_targets and self.run.solved_at_step is None
                and all(self.solved_at_step[k] is not None for k in with_targets)):
            self.run.solved_at_step = global_step
            self.run.solved_at_time_s = self.run.clock()

    def summary(self) -> dict:
        """The multi-task part of summary.json."""
        last_eval = self.evaluator.returns if self.evaluator is not None else []
        return {"env_id": ",".join(self.ids), "task_weighting": self.cfg.task_weighting,
                "popart": self.cfg.popart and self.popart_applies,
                "park_solved_tasks": self.park, "tasks": {
                    env_id: {"ranks": self.counts[k], "target_return": self.targets[k],
                             "eval_return_mean": (float(last_eval[k]) if len(last_eval) and
                                                  np.isfinite(last_eval[k]) else None),
                             "episode_return_mean": self.train_returns[k],
                             "solved": self.solved_at_step[k] is not None,
                             "solved_at_step": self.solved_at_step[k],
                             "solved_at_time_s": self.solved_at_time_s[k],
                             "env_steps": (None if self.env_steps is None
                                           else self.env_steps[k]),
                             "parked": self.parked[k],
                             "parked_at_steps": list(self.parked_at_steps[k]),
                             "resumed_at_steps": list(self.resumed_at_steps[k])}
                    for k, env_id in enumerate(self.ids)}}

    def state_dict(self) -> dict:
        return {"solved_at_step": list(self.solved_at_step),
                "solved_at_time_s": list(self.solved_at_time_s),
                "train_returns": list(self.train_returns),
                "parked": list(self.parked),
                "parked_at_steps": [list(s) for s in self.parked_at_steps],
                "resumed_at_steps": [list(s) for s in self.resumed_at_steps],
                "env_steps": None if self.env_steps is None else list(self.env_steps)}

    def load_state_dict(self, state: dict) -> None:
        """(Checkpoints from before parking lack its keys: nothing was parked then. Resumed
        without --park-solved-tasks, every task trains.)"""
        none = [False] * len(self.ids)
        self.solved_at_step = list(state["solved_at_step"])
        self.solved_at_time_s = list(state["solved_at_time_s"])
        self.train_returns = list(state["train_returns"])
        self.parked_at_steps = [list(s) for s in state.get("parked_at_steps",
                                                           [[] for _ in self.ids])]
        self.resumed_at_steps = [list(s) for s in state.get("resumed_at_steps",
                                                            [[] for _ in self.ids])]
        steps = state.get("env_steps")
        self.env_steps = None if steps is None else list(steps)
        self._set_parked(list(state.get("parked", none)) if self.park else none)
