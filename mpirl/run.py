"""The run an algorithm trains inside: its directory, log, checkpoints, stop requests, evaluations.

Algorithms receive a :class:`Run` and never touch files or signals themselves:

    run.log.metrics(record) / run.log.progress(record)   (rank 0 writes; other ranks no-op)
    run.save(update, shared, local, meta) checkpoint: ``shared`` from rank 0, ``local`` per rank
    run.restore() -> Restored | None      the latest good checkpoint when --resume
    run.stop_requested()                  all ranks agree a SIGUSR1/SIGTERM arrived
    run.record_eval(step, value)          tracks when the target was first reached
    run.finish(...)                       summary.json, final line
"""
from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import dataclass

from mpirl import faults
from mpirl.checkpoint import Checkpoints
from mpirl.config import Config
from mpirl.comm.world import World
from mpirl.runlog import Clock, RunLog
from mpirl.signals import StopRequest
from mpirl.watchdog import Watchdog


@dataclass
class Restored:
    shared: dict | None   # model / optimizer / statistics: on rank 0 only (others get a broadcast)
    local: dict | None    # this rank's own state (env, RNGs) as it saved it
    meta: dict            # counters, on every rank
    path: str


class Run:
    def __init__(self, cfg: Config, world: World, target: float | None, total_steps: int):
        self.cfg = cfg
        self.world = world
        self.dir = cfg.run_dir
        self.target = target
        self.log = RunLog(self.dir, enabled=world.is_root, tensorboard=cfg.tensorboard,
                          total_steps=total_steps)
        self.checkpoints = Checkpoints(self.dir, keep=cfg.keep_checkpoints)
        self.stop = StopRequest()
        self.watchdog = Watchdog(cfg.hang_timeout, world.world_rank)
        self.clock = Clock()
        self.solved_at_step: int | None = None
        self.solved_at_time_s: float | None = None
        self.last_eval: float | None = None
        self.preempted = False

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, update: int, shared: dict, local: dict, meta: dict) -> None:
        """Gather every rank's ``local`` state to rank 0, which writes one checkpoint."""
        every_local = self.world.gather_obj(local)
        if self.world.is_root:
            meta = {**meta, "update": update, "n_ranks": self.world.size,
                    "time_s": self.clock(), "solved_at_step": self.solved_at_step,
                    "solved_at_time_s": self.solved_at_time_s}
            state = {"meta": meta, "shared": shared, "ranks": every_local}
            self.checkpoints.save(state, update,
                                  midway=lambda: faults.at("checkpoint", 0, update))

    def restore(self) -> Restored | None:
        """With --resume: the newest good checkpoint (older ones tried in turn, saying so)."""
        if not self.cfg.resume:
            return None
        state, path = None, None
        if self.world.is_root:
            state, path = self.checkpoints.load_latest(warn=self.log.print)
            self.log.print(f"resuming from {path} (update {state['meta']['update']})")
        meta, path = self.world.bcast_obj((state["meta"], path) if state else None)
        ranks = state["ranks"] if state else None
        local = self.world.scatter_obj(ranks if ranks and len(ranks) == self.world.size
                                        else [None] * self.world.size)
        self.clock = Clock(offset=meta["time_s"])
        self.solved_at_step = meta.get("solved_at_step")
        self.solved_at_time_s = meta.get("solved_at_time_s")
        return Restored(shared=state["shared"] if state else None, local=local, meta=meta,
                        path=path)

    # -- counting -------------------------------------------------------------------------------
    def start(self, start_update: int, steps_per_update: int) -> None:
        """Training begins (or resumes) at ``start_update``; an update is ``steps_per_update``
        global environment steps (all ranks together)."""
        self.start_update, self.steps_per_update = start_update, steps_per_update
        if start_update > 0:   # resumed: what the interrupted run logged later is redone
            self.log.resume_at(start_update, start_update * steps_per_update)
        self.session_start = time.perf_counter()
        self.watchdog.beat()

    def record(self, update: int) -> dict:
        """The fields every metrics line starts with, after ``update`` updates."""
        return {"global_step": update * self.steps_per_update, "update": update,
                "time_s": self.clock(),
                "sps": (update - self.start_update) * self.steps_per_update
                       / (time.perf_counter() - self.session_start)}

    # -- the end of every update ------------------------------------------------------------------
    def end_update(self, update: int, last: int, record: dict, evaluate, checkpoint,
                   eval_now: bool = False, before_final_checkpoint=None) -> bool:
        """The bookkeeping every algorithm does after update ``update`` (1-based) of ``last``:

        evaluate when due — every --eval-interval updates, at the last update, and as soon as
        training returns reach the target (or ``eval_now``); ``evaluate(record)`` returns the mean
        evaluation return and may add its own keys to ``record`` — then write metrics and the
        progress line, agree on a stop signal, and checkpoint when due. Returns True when training
        ends here: the last update, solved with --stop-on-solve, or preempted (``self.preempted``).
        ``before_final_checkpoint`` runs first when it ends (local-sgd averages the replicas).

        A stop signal does not skip a due evaluation, although it spends some of the signal's
        grace period: an evaluation can end training (--stop-on-solve) or park a task, so a run
        stopped there and resumed would otherwise part from the uninterrupted one.
        """
        cfg = self.cfg
        self.watchdog.beat()
        reached = (self.target is not None and not self.solved
                   and record.get("episode_return_mean", -math.inf) >= self.target)
        if update % cfg.eval_interval == 0 or update == last or reached or eval_now:
            record["eval_return_mean"] = evaluate(record)
            self.record_eval(record["global_step"], record["eval_return_mean"])
        self.log.metrics(record)
        if update % cfg.log_interval == 0 or update == last:
            self.log.progress(record)
        self.preempted = self.stop_requested()
        ends = update == last or (cfg.stop_on_solve and self.solved) or self.preempted
        if ends and before_final_checkpoint is not None:
            before_final_checkpoint()
        if update % cfg.checkpoint_interval == 0 or ends:
            checkpoint(update)
        return ends

    # -- stopping and evaluation -----------------------------------------------------------------
    def stop_requested(self) -> bool:
        return self.stop.agreed(self.world)

    def record_eval(self, global_step: int, value: float) -> None:
        self.last_eval = value
        if self.solved_at_step is None and self.target is not None and value >= self.target:
            self.solved_at_step = global_step
            self.solved_at_time_s = self.clock()

    @property
    def solved(self) -> bool:
        return self.solved_at_step is not None

    def resume_command(self) -> str:
        """The command line that continues this run (same options, plus --resume)."""
        argv = [a for a in sys.argv[1:] if a not in ("--resume", "--no-resume")]
        if not any(a == "--run-dir" or a.startswith("--run-dir=") for a in argv):
            argv += ["--run-dir", self.dir]
        return " ".join([f"mpirun -n {self.world.size} python -m mpirl.train", *argv, "--resume"])

    def finish(self, update: int, extra: dict | None = None) -> dict:
        """summary.json and the closing line, after ``update`` updates."""
        self.watchdog.stop()
        global_steps = update * self.steps_per_update
        session_s = time.perf_counter() - self.session_start
        steps_this_session = (update - self.start_update) * self.steps_per_update
        summary = {
            "status": "preempted" if self.preempted else "completed",
            "env_id": self.cfg.env_id, "algo": self.cfg.algo, "seed": self.cfg.seed,
            "n_ranks": self.world.size, "global_steps": global_steps,
            "wall_time_s": self.clock(), "sps": steps_this_session / max(session_s, 1e-9),
            "eval_return_mean": self.last_eval, "target_return": self.target,
            "solved_at_step": self.solved_at_step, "solved_at_time_s": self.solved_at_time_s,
            "host": platform.node(), **(extra or {}),
        }
        self.log.summary(summary)
        if self.preempted:
            self.log.print(f"stopped by signal after {global_steps:,} steps; checkpoint saved. "
                           f"Resume with: {self.resume_command()}")
        else:
            self.log.print(f"done: {global_steps:,} steps in {summary['wall_time_s']:.1f}s; "
                           f"eval return {self.last_eval}; summary in "
                           f"{os.path.join(self.dir, 'summary.json')}")
        self.log.close()
        return summary
