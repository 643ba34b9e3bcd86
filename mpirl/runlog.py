"""What a run leaves behind and shows: metrics.jsonl, TensorBoard, progress lines, summary.json.

Only rank 0 writes or prints; every other rank holds a :class:`RunLog` that does nothing, so
callers never branch on the rank.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time


def _clean(value):
    """JSON has no NaN/inf: write null instead of producing a file other tools reject."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _update_of(line: str) -> int | None:
    """The update a metrics line records (0 for a line without one), None if it is cut short."""
    try:
        return int(json.loads(line).get("update", 0))
    except (ValueError, AttributeError):
        return None


class RunLog:
    def __init__(self, run_dir: str, enabled: bool, tensorboard: bool = True,
                 total_steps: int | None = None, stream=None):
        self.run_dir = run_dir
        self.enabled = enabled
        self.total_steps = total_steps
        self.stream = stream or sys.stdout
        self.tensorboard = enabled and tensorboard
        self._metrics = None
        self._writer = None
        if enabled:
            self._open()

    def _open(self, purge_step: int | None = None) -> None:
        """Open metrics.jsonl for appending and, if wanted, a TensorBoard writer (one that
        hides events from ``purge_step`` on, when given)."""
        self._metrics = open(os.path.join(self.run_dir, "metrics.jsonl"), "a", buffering=1)
        if self.tensorboard:
            # Imported lazily: TensorBoard costs ~1 s of start-up that runs without it skip.
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=os.path.join(self.run_dir, "tensorboard"),
                                         purge_step=purge_step)

    def resume_at(self, update: int, global_step: int) -> None:
        """A resumed run goes on from ``update``: drop what the interrupted run logged past it
        (metrics lines, and TensorBoard's events through ``purge_step``), so that each update
        appears once. A line the interruption cut short is dropped too."""
        if not self.enabled:
            return
        path = os.path.join(self.run_dir, "metrics.jsonl")
        self._metrics.close()
        if self._writer is not None:
            self._writer.close()
        with open(path) as fh:
            kept = [line for line in fh if (logged := _update_of(line)) is not None
                    and logged <= update]
        with open(path + ".tmp", "w") as fh:
            fh.writelines(kept)
        os.replace(path + ".tmp", path)
        self._open(purge_step=global_step + 1)

    def print(self, *parts) -> None:
        if self.enabled:
            print(*parts, file=self.stream, flush=True)

    def metrics(self, record: dict) -> None:
        """One line of metrics.jsonl and the same scalars in TensorBoard."""
        if not self.enabled:
            return
        record = {k: _clean(v) for k, v in record.items()}
        self._metrics.write(json.dumps(record) + "\n")
        if self._writer is not None:
            step = record.get("global_step", 0)
            for key, value in record.items():
                if isinstance(value, (int, float)) and value is not None and key != "global_step":
                    self._writer.add_scalar(key, value, step)

    def progress(self, record: dict) -> None:
        """One concise terminal line: where we are, how fast, how well."""
        if not self.enabled:
            return
        step = record["global_step"]
        pct = f"{100 * step / self.total_steps:5.1f}%" if self.total_steps else ""
        line = [f"[{pct}] step {step:>10,}", f"{record.get('sps', 0):>8,.0f} sps"]
        if "episode_return_mean" in record and record["episode_return_mean"] is not None:
            line.append(f"return {record['episode_return_mean']:8.2f}")
        if record.get("eval_return_mean") is not None:
            line.append(f"eval {record['eval_return_mean']:8.2f}")
        for key in ("value_loss", "td_loss", "policy_loss", "entropy", "epsilon", "drift"):
            if record.get(key) is not None:
                line.append(f"{key} {record[key]:.3g}")
        line.append(f"{record.get('time_s', 0):6.1f}s")
        print(" | ".join(line), file=self.stream, flush=True)

    def summary(self, summary: dict) -> None:
        if not self.enabled:
            return
        path = os.path.join(self.run_dir, "summary.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({k: _clean(v) for k, v in summary.items()}, fh, indent=2)
        os.replace(tmp, path)

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
        if self._writer is not None:
            self._writer.close()


class Clock:
    """Wall time of a run, carried across resumes (``offset`` = seconds before this start)."""

    def __init__(self, offset: float = 0.0):
        self.start = time.perf_counter()
        self.offset = offset

    def __call__(self) -> float:
        return self.offset + time.perf_counter() - self.start
