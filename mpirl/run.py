"""The run an algorithm trains inside: its directory, log, scoreboard, checkpoints, stop requests.

Algorithms receive a :class:`Run` and never touch files, signals or the scoreboard themselves:

    run.restore() -> Restored | None     --resume: the newest good checkpoint, its state on every
                                         rank and each rank's own part
    run.start(update, steps_per_update)  training begins (or resumes) here
    run.end_update(...)                  evaluate when due, log, agree on a stop, checkpoint
    run.save_checkpoint(update, state, rank_state, meta)
    run.finish(...)                      summary.json, the final line

The scoreboard (:mod:`mpirl.scoreboard`: targets, evaluations, solved, parked tasks) is the run's:
it is fed at the end of every update and checkpointed with the run's counters.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass

from mpirl import faults
from mpirl.checkpoint import Checkpoints
from mpirl.comm.collectives import broadcast_state
from mpirl.comm.world import World
from mpirl.config import Config
from mpirl.runlog import Clock, RunLog
from mpirl.scoreboard import Scoreboard
from mpirl.signals import StopRequest
from mpirl.watchdog import Watchdog


@dataclass
class Restored:
    state: dict              # what every rank shares (model, optimizer, statistics): on every rank
    rank_state: dict | None  # this rank's own state (env, RNGs) as it saved it
    meta: dict               # the algorithm's counters
    path: str


class Run:
    def __init__(self, cfg: Config, world: World, scoreboard: Scoreboard, total_steps: int):
        self.cfg = cfg
        self.world = world
        self.n_ranks = world.size   # the whole job's, whoever keeps the books (see narrow)
        self.dir = cfg.run_dir
        self.log = RunLog(self.dir, enabled=world.is_root, tensorboard=cfg.tensorboard,
                          total_steps=total_steps)
        self.scoreboard = scoreboard
        scoreboard.log = self.log.print
        self.checkpoints = Checkpoints(self.dir, keep=cfg.keep_checkpoints)
        self.stop = StopRequest()
        self.watchdog = Watchdog(cfg.hang_timeout, world.world_rank)
        self.clock = Clock()
        self.preempted = False

    def narrow(self, world: World) -> None:
        """Keep the run's books among ``world``'s ranks alone, a sub-world that holds rank 0:
        the stop agreement, checkpoints and restore (IMPALA's learners; its actors keep none)."""
        self.world = world

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, update: int, state: dict, rank_state: dict, meta: dict) -> None:
        """Collective: every rank's ``rank_state`` is gathered to rank 0, which writes one
        checkpoint of ``state`` (the same on every rank), those and the counters."""
        every_rank_state = self.world.gather_obj(rank_state)
        if self.world.is_root:
            meta = {**meta, "update": update, "n_ranks": self.n_ranks,
                    "time_s": self.clock(), "scoreboard": self.scoreboard.state_dict()}
            # (on disk: "shared" is the state every rank shares, "ranks" each rank's own)
            checkpoint = {"meta": meta, "shared": state, "ranks": every_rank_state}
            self.checkpoints.save(checkpoint, update, best=self.scoreboard.new_best,
                                  midway=lambda: faults.at("checkpoint", 0, update))

    def restore(self) -> Restored | None:
        """With --resume: the newest good checkpoint (older ones tried in turn, saying so), its
        shared state broadcast to every rank and each rank's own part scattered to it; the
        scoreboard and the clock go on from it."""
        if not self.cfg.resume:
            return None
        checkpoint, path = None, None
        if self.world.is_root:
            checkpoint, path = self.checkpoints.load_latest(warn=self.log.print)
            self.log.print(f"resuming from {path} (update {checkpoint['meta']['update']})")
        meta, path = self.world.bcast_obj((checkpoint["meta"], path) if checkpoint else None)
        state = broadcast_state(self.world, checkpoint["shared"] if checkpoint else None)
        ranks = checkpoint["ranks"] if checkpoint else None
        rank_state = self.world.scatter_obj(ranks if ranks and len(ranks) == self.world.size
                                            else [None] * self.world.size)
        self.clock = Clock(offset=meta["time_s"])
        self.scoreboard.load_state_dict(
            meta["scoreboard"] if "scoreboard" in meta
            else Scoreboard.state_from_earlier_checkpoint(meta, state))
        return Restored(state=state, rank_state=rank_state, meta=meta, path=path)

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
                   before_final_checkpoint=None) -> bool:
        """The bookkeeping every algorithm does after update ``update`` (1-based) of ``last``:

        the training episodes in ``record`` go to the scoreboard; evaluate when due — every
        --eval-interval updates, at the last update, and as soon as an unsolved task's training
        returns reach its target; ``evaluate()`` returns the mean evaluation return of each task
        (one number for one task) — then write metrics and the progress line, agree on a stop
        signal, and checkpoint when due (``checkpoint(update)``; also after an evaluation better
        than any before, which becomes checkpoints/best.pt). Returns True when training
        ends here: the last update, solved with --stop-on-solve, or preempted
        (``self.preempted``). ``before_final_checkpoint`` runs first when it ends (local-sgd
        averages the replicas).

        A stop signal does not skip a due evaluation, although it spends some of the signal's
        grace period: an evaluation can end training (--stop-on-solve) or park a task, so a run
        stopped there and resumed would otherwise part from the uninterrupted one.
        """
        cfg, scoreboard = self.cfg, self.scoreboard
        self.watchdog.beat()
        scoreboard.new_best = False
        scoreboard.record_training(record, self.steps_per_update // self.world.size,
                                   self.start_update)
        if (update % cfg.eval_interval == 0 or update == last
                or scoreboard.reached_in_training()):
            scoreboard.record_eval(record, record["global_step"], evaluate(), self.clock())
        self.log.metrics(record)
        if update % cfg.log_interval == 0 or update == last:
            self.log.progress(record)
        self.preempted = self.stop_requested()
        ends = update == last or (cfg.stop_on_solve and scoreboard.solved) or self.preempted
        if ends and before_final_checkpoint is not None:
            before_final_checkpoint()
        if update % cfg.checkpoint_interval == 0 or ends or scoreboard.new_best:
            checkpoint(update)   # (a new best evaluation: also checkpoints/best.pt)
        return ends

    # -- stopping ------------------------------------------------------------------------------
    def stop_requested(self) -> bool:
        return self.stop.agreed(self.world)

    def resume_command(self) -> str:
        """The command line that continues this run (same options, plus --resume)."""
        argv = [a for a in sys.argv[1:] if a not in ("--resume", "--no-resume")]
        if not any(a == "--run-dir" or a.startswith("--run-dir=") for a in argv):
            argv += ["--run-dir", self.dir]
        return " ".join([f"mpirun -n {self.n_ranks} python -m mpirl.train", *argv, "--resume"])

    def finish(self, update: int, extra: dict | None = None) -> dict:
        """summary.json and the closing line, after ``update`` updates."""
        self.watchdog.stop()
        global_steps = update * self.steps_per_update
        session_s = time.perf_counter() - self.session_start
        steps_this_session = (update - self.start_update) * self.steps_per_update
        summary = {
            "status": "preempted" if self.preempted else "completed",
            "env_id": self.cfg.env_id, "algo": self.cfg.algo, "seed": self.cfg.seed,
            "n_ranks": self.n_ranks, "global_steps": global_steps,
            "wall_time_s": self.clock(), "sps": steps_this_session / max(session_s, 1e-9),
            "eval_return_mean": self.scoreboard.last_eval,
            "target_return": self.scoreboard.target,
            "solved_at_step": self.scoreboard.run_solved_at_step,
            "solved_at_time_s": self.scoreboard.run_solved_at_time_s,
            "host": platform.node(), **(extra or {}),
        }
        self.log.summary(summary)
        if self.preempted:
            self.log.print(f"stopped by signal after {global_steps:,} steps; checkpoint saved. "
                           f"Resume with: {self.resume_command()}")
        else:
            self.log.print(f"done: {global_steps:,} steps in {summary['wall_time_s']:.1f}s; "
                           f"eval return {self.scoreboard.last_eval}; summary in "
                           f"{os.path.join(self.dir, 'summary.json')}")
        self.log.close()
        return summary
