"""A hang is the worst outcome there is: a watchdog that turns one into a loud, prompt failure.

An exception or a dead rank already ends the job (abort-on-error, mpirun's process monitoring).
A rank that stops making progress without dying — an environment that never returns, a deadlock
— would leave every other rank blocked in its next collective forever. Each rank therefore runs
a daemon thread that expects a heartbeat at every update boundary; after ``timeout`` seconds
without one it prints where this rank's main thread is stuck (faulthandler) and aborts the whole
job. Ranks waiting for a hung peer go quiet at the same moment, so several ranks may report:
the stacks show which one was not in MPI.
"""
from __future__ import annotations

import faulthandler
import sys
import threading
import time

from mpirl.comm.world import abort_job


class Watchdog:
    def __init__(self, timeout: float, rank: int):
        self.timeout = timeout
        self.rank = rank
        self.last = time.monotonic()
        self._stopped = threading.Event()
        if timeout > 0:
            threading.Thread(target=self._watch, name="mpirl-watchdog", daemon=True).start()

    def beat(self) -> None:
        """This rank made progress (called at every update boundary)."""
        self.last = time.monotonic()

    def stop(self) -> None:
        """Training is over: what follows (the summary, MPI's finalisation waiting for the other
        ranks) is no update, and a finished run must not be aborted as hung."""
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(min(self.timeout / 4, 5.0)):
            idle = time.monotonic() - self.last
            if idle > self.timeout:
                sys.stderr.write(f"[mpirl rank {self.rank}] failed: no progress for {idle:.0f} s "
                                 f"(--hang-timeout {self.timeout:g}); this rank's stacks:\n")
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                sys.stderr.flush()
                abort_job(3)
