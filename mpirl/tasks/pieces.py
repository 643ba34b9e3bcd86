"""The pieces a multi-task rank trains with, in place of the single-task ones: its observation
normaliser (padded, tagged, per task), PopArt value normalisation per task, and an evaluator of
every task at once."""
from __future__ import annotations

import numpy as np
import torch

from mpirl.comm.collectives import allreduce_sum, allreduce_sum_nonblocking
from mpirl.comm.world import World
from mpirl.envs.atari import Preprocessing
from mpirl.envs.evaluate import Evaluator
from mpirl.envs.normalize import ObsNormalizer, RunningMeanStd
from mpirl.models.multitask import MultiTaskActorCritic
from mpirl.tasks.spec import pad_and_tag


class TaskObsNormalizer(ObsNormalizer):
    """This task's observation normaliser; its output padded and tagged (``out_dim`` wide).

    :meth:`allreduce_statistics` is given the task's group, so statistics are those of the task's
    ranks only. :meth:`allgather_state_dict` holds every task's statistics, so that rank 0's
    checkpoint restores all of them.

    ``all_tasks`` (DQN, whose replayed batches mix tasks): every rank also holds every other
    task's statistics, to normalise replayed observations of any task
    (:meth:`normalize_replayed`). :meth:`allreduce_statistics` then sums one (K, 1 + 2D) array
    over the whole world, each rank filling its task's row, and every rank merges every row (the
    task's own statistics are still those of its ranks' observations only).
    """

    def __init__(self, obs_dim: int, width: int, task: int, task_ids: list[str], world: World,
                 enabled: bool = True, all_tasks: bool = False,
                 obs_dims: list[int] | None = None, clip: float = 10.0):
        self.width, self.task, self.task_ids, self.world = width, task, task_ids, world
        self.all_tasks = all_tasks
        super().__init__((obs_dim,), enabled=enabled, clip=clip)
        self.out_dim = width + len(task_ids)
        if all_tasks:
            dims = list(obs_dims) if obs_dims is not None else None
            if dims is None or len(dims) != len(task_ids) or dims[task] != obs_dim:
                raise ValueError("all_tasks needs every task's observation width (obs_dims)")
            self.obs_dims = dims
            self.task_rms = [self.rms if k == task else RunningMeanStd((d,))
                          for k, d in enumerate(dims)]
            self._refresh()

    def __call__(self, obs: np.ndarray, accumulate: bool = True) -> np.ndarray:
        return pad_and_tag(super().__call__(obs, accumulate), self.width, self.task,
                           len(self.task_ids))

    def _refresh(self):
        super()._refresh()
        if not getattr(self, "all_tasks", False) or not hasattr(self, "task_rms"):
            return
        # every task's statistics as (K, D) tables; padding columns map 0 to 0
        self._means = np.zeros((len(self.task_rms), self.width), np.float32)
        self._inv_stds = np.ones((len(self.task_rms), self.width), np.float32)
        for k, rms in enumerate(self.task_rms):
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
        for a row of this rank's task, what acting gave (other tasks need ``all_tasks``)."""
        task = np.full(len(obs), self.task) if task is None else np.asarray(task, np.int64)
        out = np.zeros((len(obs), self.out_dim), np.float32)
        if not self.enabled:
            out[:, :self.width] = obs
        else:
            if not self.all_tasks:
                raise ValueError("normalising other tasks' observations needs all_tasks=True")
            out[:, :self.width] = np.clip((obs - self._means[task]) * self._inv_stds[task],
                                          -self.clip, self.clip)
        out[np.arange(len(obs)), self.width + task] = 1.0
        return out

    def allreduce_statistics(self, world: World) -> None:
        if not self.all_tasks:
            return super().allreduce_statistics(world)
        if not self.enabled:
            return
        # (the world, whatever ``world`` is given: every task's row goes to every rank)
        D, d = self.width, self.rms.mean.shape[0]
        rows = np.zeros((len(self.task_rms), 1 + 2 * D))
        rows[self.task, 0] = self._pending_count
        rows[self.task, 1:1 + d] = self._pending[0]
        rows[self.task, 1 + D:1 + D + d] = self._pending[1]
        total = allreduce_sum(self.world, rows).reshape(rows.shape)
        for k, rms in enumerate(self.task_rms):
            dk = self.obs_dims[k]
            rms.merge(total[k, 0], total[k, 1:1 + dk], total[k, 1 + D:1 + D + dk])
        self._merged()

    def allgather_state_dict(self) -> dict:
        """Every task's statistics, from its ranks (collective: every rank calls it)."""
        return dict(self.world.allgather_obj((self.task_ids[self.task], self.state_dict())))

    def load_state_dict(self, state: dict) -> None:
        if self.all_tasks:
            for task_id, rms in zip(self.task_ids, self.task_rms):
                rms.load_state_dict(state[task_id])
        super().load_state_dict(state[self.task_ids[self.task]])


class TaskValueNorm:
    """PopArt in the PPO update: value-head outputs <-> returns, with this rank's task's statistics.

    :meth:`allreduce_update` is collective: each rank puts its task's (count, sum, sum of squares) of returns in
    its row of a (K, 3) array, one Allreduce sums them, and every rank applies the same update and
    head rescale (replicas stay identical). With ``learn=False`` (--no-popart) the statistics
    stay at mean 0, std 1 and the heads speak in return units.

    ``parked`` (:meth:`set_parked`, called by the run's scoreboard): the tasks that train no more.
    A parked task's ranks fill a zero row (count 0: the statistics of the task stay as they are);
    while any task is parked
    the Allreduce is non-blocking, and parked ranks wait for it without spinning (they arrive
    a whole rollout early).
    """

    def __init__(self, world: World, task: int, model: MultiTaskActorCritic, learn: bool):
        self.world, self.task, self.model, self.learn = world, task, model, learn
        self.parked = [False] * model.num_tasks

    def set_parked(self, parked: list[bool]) -> None:
        self.parked = list(parked)

    def denormalize_(self, values: np.ndarray) -> np.ndarray:
        values[...] = self.model.popart.denormalize(torch.from_numpy(values), self.task).numpy()
        return values

    def allreduce_update(self, b_values: torch.Tensor, b_returns: torch.Tensor):
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
    """Evaluates every task at once: each group runs its own task's episodes."""

    def __init__(self, world: World, group: World, task: int, num_tasks: int, env_id: str,
                 episodes: int, seed: int, mode: str,
                 preprocessing: Preprocessing = Preprocessing()):
        self.world, self.group, self.task = world, group, task
        self.own = Evaluator(group, env_id, episodes, seed=seed, mode=mode,
                             preprocessing=preprocessing)
        self.returns = np.full(num_tasks, np.nan)

    def run_across_ranks(self, act, observe=None) -> np.ndarray:
        """Each task's mean evaluation return (K,), identical on every rank."""
        mine = self.own.run_across_ranks(act, observe)
        row = np.zeros(len(self.returns))
        row[self.task] = mine if self.group.is_root else 0.0
        self.returns = allreduce_sum(self.world, row)
        return self.returns

    def close(self) -> None:
        self.own.close()
