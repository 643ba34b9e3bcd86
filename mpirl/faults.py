"""Fault injection for tests: make rank k fail at update s in a chosen way.

    MPIRL_FAULT=KIND@RANK:UPDATE      e.g.  MPIRL_FAULT=raise@1:3

KIND is one of:
  raise       a Python exception at the start of the update
  interrupt   KeyboardInterrupt at the start of the update, as Ctrl-C on that rank
  env         the environment raises during the rollout
  nan         the loss becomes NaN
  kill        the rank SIGKILLs itself (no Python cleanup, no MPI_Abort)
  ckpt        the checkpoint write fails with "No space left on device" (rank 0 writes)
  ckpt-kill   the rank is SIGKILLed half-way through writing a checkpoint
  hang        the rank stops making progress (sleeps) without dying, as a deadlock would

and one that slows a rank down for the whole run rather than failing it:

    MPIRL_FAULT=slow@RANK:MS          every step of the rank's vector env sleeps MS milliseconds
                                      (a straggler: a slow emulator, a busy core)

Only tests and benchmarks set it; it is read once at import and costs one comparison per fault point.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass

KINDS = ("raise", "interrupt", "env", "nan", "kill", "ckpt", "ckpt-kill", "hang", "slow")
POINT_OF = {"raise": "update", "interrupt": "update", "kill": "update", "hang": "update", "env": "rollout",
            "nan": "loss", "ckpt": "checkpoint", "ckpt-kill": "checkpoint", "slow": "env_step"}


class InjectedFault(RuntimeError):
    pass


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: int
    update: int   # (slow: the milliseconds per step)

    @classmethod
    def parse(cls, text: str) -> "Fault":
        try:
            kind, where = text.split("@")
            rank, update = where.split(":")
            fault = cls(kind, int(rank), int(update))
        except ValueError:
            raise ValueError(f"MPIRL_FAULT={text!r}: expected KIND@RANK:UPDATE "
                             "(slow@RANK:MS)") from None
        if kind not in KINDS:
            raise ValueError(f"MPIRL_FAULT kind {kind!r}: choose from {', '.join(KINDS)}")
        return fault


_FAULT = Fault.parse(os.environ["MPIRL_FAULT"]) if os.environ.get("MPIRL_FAULT") else None


def at(point: str, rank: int, update: int) -> bool:
    """Fire the configured fault if it belongs to this point, rank and update.

    Returns True for faults the caller must apply itself (``nan``: poison the loss).
    """
    f = _FAULT
    if f is None or POINT_OF[f.kind] != point or f.rank != rank or f.update != update:
        return False
    if f.kind == "raise":
        raise InjectedFault(f"injected exception at update {update}")
    if f.kind == "interrupt":
        raise KeyboardInterrupt
    if f.kind == "env":
        raise InjectedFault(f"injected environment failure: env.step raised at update {update}")
    if f.kind == "ckpt":
        raise OSError(errno.ENOSPC, "No space left on device (injected)")
    if f.kind in ("kill", "ckpt-kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    if f.kind == "hang":
        time.sleep(1e6)
    return True  # nan


def step_delay_s(rank: int) -> float:
    """Seconds every env step of world rank ``rank`` sleeps (slow@RANK:MS; else 0)."""
    f = _FAULT
    return f.update / 1000.0 if f is not None and f.kind == "slow" and f.rank == rank else 0.0
