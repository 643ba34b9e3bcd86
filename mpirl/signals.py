"""Preemption: SIGUSR1 / SIGTERM ask the run to stop at the next update boundary.

The handler only records the request; ranks agree on it with one tiny Allreduce per update
(:meth:`StopRequest.agreed`), so all of them stop after the same update, rank 0 checkpoints, and
the job exits 0 with a line saying how to resume. Slurm sends SIGUSR1 ahead of a time limit or
preemption (``--signal=B:USR1@60``) and SIGTERM on cancel.
"""
from __future__ import annotations

import signal

from mpirl.comm.world import World

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class StopRequest:
    def __init__(self):
        self.signum: int | None = None
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.signum = signum

    def agreed(self, world: World) -> bool:
        """True on every rank once any rank has received a stop signal."""
        return world.any_rank(self.signum is not None)
