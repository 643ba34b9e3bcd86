"""Checkpoints: atomic, pruned, checksummed, and loaded without executing code."""
import os
import pickle

import pytest
import torch

from mpirl.checkpoint import CheckpointError, Checkpoints


def _state(v):
    return {"model": {"w": torch.full((3,), float(v))}, "meta": {"update": v, "name": "x"}}


def test_keeps_the_newest_k_and_loads_the_latest(tmp_path):
    ckpts = Checkpoints(str(tmp_path), keep=2)
    for update in (5, 10, 15):
        ckpts.save(_state(update), update)
    names = sorted(os.listdir(tmp_path / "checkpoints"))
    assert names == ["ckpt_00000010.pt", "ckpt_00000010.sha256",
                     "ckpt_00000015.pt", "ckpt_00000015.sha256"]
    state, path = ckpts.load_latest()
    assert path.endswith("ckpt_00000015.pt") and state["meta"]["update"] == 15
    assert torch.equal(state["model"]["w"], torch.full((3,), 15.0))


def test_truncated_checkpoint_falls_back_to_the_previous_one_saying_so(tmp_path):
    ckpts = Checkpoints(str(tmp_path), keep=3)
    ckpts.save(_state(1), 1)
    newest = ckpts.save(_state(2), 2)
    with open(newest, "r+b") as fh:
        fh.truncate(os.path.getsize(newest) // 2)
    warnings = []
    state, path = ckpts.load_latest(warn=warnings.append)
    assert state["meta"]["update"] == 1
    assert "checksum mismatch" in warnings[0] and "ckpt_00000002" in warnings[0]


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
    ckpts = Checkpoints(str(tmp_path))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ckpts.load_latest()
    path = ckpts.save(_state(1), 1)
    with open(path, "r+b") as fh:
        fh.seek(10)
        fh.write(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        ckpts.load_latest(warn=lambda m: None)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_loading_never_executes_code_from_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpts = Checkpoints(str(tmp_path))
    path = ckpts.save(_state(1), 1)
    # Replace the payload by a malicious pickle with a matching checksum.
    import hashlib
    data = pickle.dumps({"x": Evil()})
    open(path, "wb").write(data)
    open(path[:-3] + ".sha256", "w").write(hashlib.sha256(data).hexdigest())
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        Checkpoints.read(path)
    assert not (tmp_path / "pwned").exists()


def test_a_failed_write_leaves_the_previous_checkpoints_intact(tmp_path):
    ckpts = Checkpoints(str(tmp_path), keep=3)
    ckpts.save(_state(1), 1)

    def disk_full():
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        ckpts.save(_state(2), 2, midway=disk_full)
    leftovers = [n for n in os.listdir(tmp_path / "checkpoints") if ".tmp" in n]
    assert leftovers == []
    state, path = ckpts.load_latest(warn=lambda m: None)
    assert state["meta"]["update"] == 1


def test_a_checksum_left_without_its_checkpoint_is_cleared_by_the_next_save(tmp_path):
    ckpts = Checkpoints(str(tmp_path), keep=3)
    ckpts.save(_state(1), 1)

    def io_error():   # the save dies between the checksum and the checkpoint
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError):
        ckpts.save(_state(2), 2, midway=io_error)
    assert (tmp_path / "checkpoints" / "ckpt_00000002.sha256").exists()
    ckpts.save(_state(3), 3)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [
        "ckpt_00000001.pt", "ckpt_00000001.sha256", "ckpt_00000003.pt", "ckpt_00000003.sha256"]

