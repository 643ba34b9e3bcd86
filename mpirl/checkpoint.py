"""Checkpoints that survive crashes: atomic writes, checksums, the last K kept, safe loading.

Layout in ``<run_dir>/checkpoints/``::

    ckpt_00000120.pt       torch.save of a dict of tensors / numbers / strings / lists / dicts
    ckpt_00000120.sha256   its SHA-256, written (atomically) before the .pt appears
    best.pt, best.sha256   a copy of the checkpoint of the best evaluation so far

A checkpoint is written to a temporary file, fsynced, then renamed into place, so a crash leaves
either the old set or the new one, never half a file under a checkpoint's name. Loading uses
``torch.load(weights_only=True)``: a checkpoint file can never execute code.
"""
from __future__ import annotations

import glob
import hashlib
import io
import os
import re

import numpy as np
import torch

NAME = re.compile(r"ckpt_(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    """No usable checkpoint (missing, truncated or corrupted)."""


def plain(value):
    """``value`` with numpy arrays as tensors and numpy scalars as Python numbers, recursively:
    the only shapes ``torch.load(weights_only=True)`` accepts besides containers and strings."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _atomic_write(path: str, data: bytes, midway=None) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data[:len(data) // 2])
            if midway is not None:  # fault injection: die or fail with half a file written
                midway()
            fh.write(data[len(data) // 2:])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Checkpoints:
    """The checkpoints of one run directory."""

    def __init__(self, run_dir: str, keep: int = 3):
        self.dir = os.path.join(run_dir, "checkpoints")
        self.keep = keep

    def paths(self) -> list[str]:
        """Checkpoint files, newest first."""
        found = [p for p in glob.glob(os.path.join(self.dir, "ckpt_*.pt")) if NAME.search(p)]
        return sorted(found, reverse=True)

    def best_path(self) -> str:
        return os.path.join(self.dir, "best.pt")

    def save(self, state: dict, update: int, midway=None, best: bool = False) -> str:
        """Write ``state`` as the checkpoint of ``update`` (and, with ``best``, as the best one);
        prune all but the newest ``keep``."""
        os.makedirs(self.dir, exist_ok=True)
        for stale in glob.glob(os.path.join(self.dir, "*.tmp.*")):  # from a write that died
            os.unlink(stale)
        for sidecar in glob.glob(os.path.join(self.dir, "ckpt_*.sha256")):
            if not os.path.exists(sidecar[:-7] + ".pt"):   # a save that died between its writes
                os.unlink(sidecar)
        buf = io.BytesIO()
        torch.save(plain(state), buf)
        data = buf.getvalue()
        path = os.path.join(self.dir, f"ckpt_{update:08d}.pt")
        checksum = hashlib.sha256(data).hexdigest().encode() + b"\n"
        _atomic_write(path[:-3] + ".sha256", checksum)
        _atomic_write(path, data, midway)
        if best:
            _atomic_write(self.best_path()[:-3] + ".sha256", checksum)
            _atomic_write(self.best_path(), data)
        for old in self.paths()[self.keep:]:
            for p in (old, old[:-3] + ".sha256"):
                if os.path.exists(p):
                    os.unlink(p)
        return path

    @staticmethod
    def read(path: str) -> dict:
        """Load one checkpoint, verifying its checksum; CheckpointError says what is wrong."""
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
        sidecar = path[:-3] + ".sha256"
        try:
            with open(sidecar) as fh:
                expected = fh.read().strip()
        except OSError:
            raise CheckpointError(f"{path}: its checksum file {os.path.basename(sidecar)} "
                                  "is missing") from None
        if hashlib.sha256(data).hexdigest() != expected:
            raise CheckpointError(f"{path}: checksum mismatch (truncated or corrupted file)")
        try:
            # (on the CPU whatever device wrote it: a GPU run resumes or evaluates anywhere)
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means unusable
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: cannot be loaded safely ({reason[:300]})") from None

    def load_latest(self, warn=print) -> tuple[dict, str]:
        """The newest checkpoint that loads; older ones are tried in turn, saying so."""
        paths = self.paths()
        if not paths:
            raise CheckpointError(f"no checkpoint in {self.dir}")
        problems = []
        for path in paths:
            try:
                state = self.read(path)
            except CheckpointError as exc:
                problems.append(str(exc))
                warn(f"warning: {exc}; trying an older checkpoint")
                continue
            return state, path
        raise CheckpointError("no usable checkpoint:\n  " + "\n  ".join(problems))
