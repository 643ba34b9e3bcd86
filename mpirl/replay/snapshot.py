"""A rank's replay memory on disk (--save-replay): ``RUN_DIR/replay/rank<R>.npz``.

Each rank writes its own file at every checkpoint, beside the checkpoint rather than inside it:
a memory of a million transitions is hundreds of MB, which should neither travel to rank 0 nor
be pickled. A file holds the memory's records (or frames) and priorities, the adder's waiting steps,
the sharing generators' states and the update it belongs to; only the newest is kept, written to
a temporary name and renamed, so a job killed mid-write leaves the previous one whole. On
--resume a memory is loaded only when every rank has one of the checkpoint's update
(:func:`has_replay`, asked of all ranks by the trainer); otherwise they all start empty.
"""
from __future__ import annotations

import json
import os

import numpy as np

from mpirl.replay.nstep import NStepAdder
from mpirl.replay.sharing import SharedReplay


def replay_path(run_dir: str, rank: int) -> str:
    return os.path.join(run_dir, "replay", f"rank{rank}.npz")


def save_replay(run_dir: str, rank: int, update: int, replay: SharedReplay,
                adder: NStepAdder) -> None:
    path = replay_path(run_dir, rank)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {f"memory.{k}": v for k, v in replay.memory.state_dict().items()}
    arrays.update({f"adder.{k}": v for k, v in adder.state_dict().items()})
    arrays["generators"] = np.array(json.dumps(replay.generator_states()))
    arrays["update"] = np.array([update], np.int64)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def has_replay(run_dir: str, rank: int, update: int) -> bool:
    """This rank's memory was saved with the checkpoint of ``update``."""
    try:
        with np.load(replay_path(run_dir, rank)) as saved:
            return int(saved["update"][0]) == update
    except (OSError, KeyError, ValueError):
        return False


def load_replay(run_dir: str, rank: int, replay: SharedReplay, adder: NStepAdder | None) -> None:
    """This rank's memory as saved; the adder's waiting steps too unless ``adder`` is None (the
    envs start fresh episodes: steps of the old ones must not join them)."""
    with np.load(replay_path(run_dir, rank)) as saved:
        replay.memory.load_state_dict({k[7:]: saved[k] for k in saved.files
                                       if k.startswith("memory.")})
        if adder is not None:
            adder.load_state_dict({k[6:]: saved[k] for k in saved.files
                                   if k.startswith("adder.")})
        replay.load_generator_states(json.loads(str(saved["generators"])))
