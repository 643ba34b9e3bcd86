"""The run's scoreboard: each task's target, its evaluations, when it was solved, and whether it
is parked. A single-task run is a scoreboard of one task.

:class:`~mpirl.run.Run` owns it and feeds it at the end of every update: the training episodes'
returns (:meth:`Scoreboard.record_training`) and, when an evaluation is due, its returns per task
(:meth:`Scoreboard.record_eval`). From these it decides

    solved     each task against its own target; the run once every task with a target is
    due early  an unsolved task's training episodes reached its target: evaluate now
    parked     (--park-solved-tasks) a task whose evaluation reached its target sits out the
               updates that follow, until an evaluation falls below it

Every rank holds the same scoreboard (the returns it is fed are identical everywhere), so every
rank parks and unparks a task at the same update, as the collectives need. Whoever must follow
the parked flags (the task-weighted sync, PopArt) subscribes with :meth:`on_parking`.

Keys in a metrics record: with one task, the plain ``episode_return_mean`` and
``eval_return_mean``; with ``--tasks``, each task's prefixed by its id
(``Acrobot-v1/eval_return_mean``) and ``eval_return_mean`` the mean over tasks.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np


class Scoreboard:
    def __init__(self, task_ids: list[str], targets: list[float | None],
                 ranks_per_task: list[int], per_task_keys: bool = False, park: bool = False,
                 stop_on_solve: bool = False, log: Callable[[str], None] = print):
        self.ids, self.targets = list(task_ids), list(targets)
        self.counts = list(ranks_per_task)
        self.per_task_keys, self.park, self.log = per_task_keys, park, log
        self.stop_on_solve = stop_on_solve
        K = len(self.ids)
        self.eval_returns = np.full(K, np.nan)
        self.last_eval: float | None = None              # the run's: the mean over tasks
        self.best_eval: float | None = None              # the best of them so far ...
        self.best_step: int | None = None                # ... and when
        self.new_best = False                            # the latest evaluation is the best
        self.solved_at_step: list[int | None] = [None] * K
        self.solved_at_time_s: list[float | None] = [None] * K
        self.run_solved_at_step: int | None = None
        self.run_solved_at_time_s: float | None = None
        self.train_returns: list[float | None] = [None] * K          # the latest known
        self.latest_train_returns: list[float | None] = [None] * K   # this update's
        self.env_steps: list[int] | None = None   # per task: steps its ranks took
        self.parked = [False] * K
        self.parked_at_steps: list[list[int]] = [[] for _ in self.ids]
        self.resumed_at_steps: list[list[int]] = [[] for _ in self.ids]
        self._parking_listeners: list[Callable[[list[bool]], None]] = []

    @property
    def target(self) -> float | None:
        """The run's one target (single task); None with several tasks, each with its own."""
        return None if self.per_task_keys else self.targets[0]

    @property
    def solved(self) -> bool:
        return self.run_solved_at_step is not None

    def key(self, k: int, name: str) -> str:
        """Task k's metrics key ``name``."""
        return f"{self.ids[k]}/{name}" if self.per_task_keys else name

    # -- parking -------------------------------------------------------------------------------
    def on_parking(self, listener: Callable[[list[bool]], None]) -> None:
        """Call ``listener(parked)`` now and whenever the parked flags change."""
        self._parking_listeners.append(listener)
        listener(list(self.parked))

    def _set_parked(self, parked: list[bool]) -> None:
        self.parked = [bool(p) for p in parked]
        for listener in self._parking_listeners:
            listener(list(self.parked))

    def _update_parking(self, global_step: int) -> None:
        """After an evaluation: park the tasks at or above their target, unpark those below."""
        now = [target is not None and bool(self.eval_returns[k] >= target)
               for k, target in enumerate(self.targets)]
        if now == self.parked:
            return
        for k, env_id in enumerate(self.ids):
            n, value, target = self.counts[k], float(self.eval_returns[k]), self.targets[k]
            if now[k] and not self.parked[k]:
                self.parked_at_steps[k].append(global_step)
                self.log(f"  parked {env_id} at step {global_step:,} (eval {value:.1f} >= target "
                         f"{target:g}): its {n} rank{'s' * (n > 1)} stop collecting and training")
            elif self.parked[k] and not now[k]:
                self.resumed_at_steps[k].append(global_step)
                self.log(f"  {env_id} trains again from step {global_step:,} (eval {value:.1f} < "
                         f"target {target:g})")
        if all(now) and not self.stop_on_solve:
            self.log("  every task is parked: updates only evaluate until an evaluation falls "
                     "below a target or the budget ends")
        self._set_parked(now)

    # -- what the run feeds it -----------------------------------------------------------------
    def record_training(self, record: dict, steps_per_rank: int, start_update: int) -> None:
        """An update's training episodes (their returns read from ``record``), and the steps
        each task's ranks took in it (``steps_per_rank`` each; none while parked)."""
        if self.env_steps is None:   # a fresh run, or a checkpoint from before per-task counts
            self.env_steps = [start_update * steps_per_rank * n for n in self.counts]
        for k in range(len(self.ids)):
            value = record.get(self.key(k, "episode_return_mean"))
            self.latest_train_returns[k] = value
            if value is not None:
                self.train_returns[k] = value
            if not self.parked[k]:
                self.env_steps[k] += steps_per_rank * self.counts[k]
            if self.park:
                record[self.key(k, "parked")] = self.parked[k]
                record[self.key(k, "env_steps")] = self.env_steps[k]

    def reached_in_training(self) -> bool:
        """Whether an unsolved task's training episodes of this update reached its target:
        time for an evaluation, before the interval is up."""
        return any(target is not None and solved is None and value is not None
                   and value >= target
                   for target, solved, value in zip(self.targets, self.solved_at_step,
                                                    self.latest_train_returns))

    def record_eval(self, record: dict, global_step: int, returns, time_s: float) -> None:
        """An evaluation's mean return per task (a number for one task): into ``record``, with
        the solved flags and, with --park-solved-tasks, the parked ones."""
        self.eval_returns = np.atleast_1d(np.asarray(returns, np.float64))
        self.last_eval = float(self.eval_returns.mean())
        record["eval_return_mean"] = self.last_eval
        self.new_best = self.best_eval is None or self.last_eval > self.best_eval
        if self.new_best:
            self.best_eval, self.best_step = self.last_eval, global_step
        for k in range(len(self.ids)):
            value, target = float(self.eval_returns[k]), self.targets[k]
            if target is not None and value >= target and self.solved_at_step[k] is None:
                self.solved_at_step[k], self.solved_at_time_s[k] = global_step, time_s
        with_targets = [k for k, t in enumerate(self.targets) if t is not None]
        if (with_targets and self.run_solved_at_step is None
                and all(self.solved_at_step[k] is not None for k in with_targets)):
            self.run_solved_at_step, self.run_solved_at_time_s = global_step, time_s
        if not self.per_task_keys:
            return
        for k in range(len(self.ids)):
            record[self.key(k, "eval_return_mean")] = float(self.eval_returns[k])
            record[self.key(k, "solved")] = self.solved_at_step[k] is not None
        if self.park:
            self._update_parking(global_step)
            for k in range(len(self.ids)):
                record[self.key(k, "parked")] = self.parked[k]
        self.log("  eval by task: " + ", ".join(
            f"{env_id} {self.eval_returns[k]:.1f}"
            + (" (solved" + (", parked" if self.parked[k] else "") + ")"
               if self.solved_at_step[k] is not None else "")
            for k, env_id in enumerate(self.ids)))

    # -- the summary and checkpoints ----------------------------------------------------------
    def tasks_summary(self) -> dict:
        """Each task's part of summary.json (multi-task runs)."""
        return {env_id: {
            "ranks": self.counts[k], "target_return": self.targets[k],
            "eval_return_mean": (float(self.eval_returns[k])
                                 if math.isfinite(self.eval_returns[k]) else None),
            "episode_return_mean": self.train_returns[k],
            "solved": self.solved_at_step[k] is not None,
            "solved_at_step": self.solved_at_step[k],
            "solved_at_time_s": self.solved_at_time_s[k],
            "env_steps": None if self.env_steps is None else self.env_steps[k],
            "parked": self.parked[k],
            "parked_at_steps": list(self.parked_at_steps[k]),
            "resumed_at_steps": list(self.resumed_at_steps[k])}
            for k, env_id in enumerate(self.ids)}

    def state_dict(self) -> dict:
        return {"solved_at_step": list(self.solved_at_step),
                "solved_at_time_s": list(self.solved_at_time_s),
                "run_solved_at_step": self.run_solved_at_step,
                "run_solved_at_time_s": self.run_solved_at_time_s,
                "best_eval": self.best_eval, "best_step": self.best_step,
                "train_returns": list(self.train_returns),
                "parked": list(self.parked),
                "parked_at_steps": [list(s) for s in self.parked_at_steps],
                "resumed_at_steps": [list(s) for s in self.resumed_at_steps],
                "env_steps": None if self.env_steps is None else list(self.env_steps)}

    def load_state_dict(self, state: dict) -> None:
        """(Resumed without --park-solved-tasks, every task trains.)"""
        K = len(self.ids)
        self.solved_at_step = list(state["solved_at_step"])
        self.solved_at_time_s = list(state["solved_at_time_s"])
        self.run_solved_at_step = state["run_solved_at_step"]
        self.run_solved_at_time_s = state["run_solved_at_time_s"]
        self.best_eval, self.best_step = state.get("best_eval"), state.get("best_step")
        self.train_returns = list(state.get("train_returns", [None] * K))
        self.parked_at_steps = [list(s) for s in state.get("parked_at_steps", [[]] * K)]
        self.resumed_at_steps = [list(s) for s in state.get("resumed_at_steps", [[]] * K)]
        steps = state.get("env_steps")
        self.env_steps = None if steps is None else list(steps)
        self._set_parked(list(state.get("parked", [False] * K)) if self.park else [False] * K)

    @staticmethod
    def state_from_earlier_checkpoint(meta: dict, shared: dict) -> dict:
        """The state of a checkpoint written before the scoreboard had its own (mpirl 0.1): the
        run's solved step and time in ``meta``, multi-task bookkeeping in ``shared["tasks"]``."""
        tasks = shared.get("tasks") or {}
        solved, solved_s = meta.get("solved_at_step"), meta.get("solved_at_time_s")
        return {"solved_at_step": tasks.get("solved_at_step", [solved]),
                "solved_at_time_s": tasks.get("solved_at_time_s", [solved_s]),
                "run_solved_at_step": solved, "run_solved_at_time_s": solved_s,
                **{k: v for k, v in tasks.items() if k not in ("solved_at_step",
                                                                "solved_at_time_s")}}
