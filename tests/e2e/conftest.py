import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def final_params(run_dir: Path) -> dict:
    """Model tensors of a run's newest checkpoint."""
    newest = sorted((Path(run_dir) / "checkpoints").glob("ckpt_*.pt"))[-1]
    return torch.load(newest, weights_only=True)["shared"]["model"]


def crash_then_resume(nprocs: int, args: list[str], crash_at_update: int, total: int,
                      resumed_from: str):
    """Train with rank 0 failing at ``crash_at_update``, then --resume; check the resumed run
    started from ``resumed_from`` and completed all ``total`` steps. Returns the resumed Result."""
    from tests.launch import train
    run_dir = Path(args[args.index("--run-dir") + 1])
    crashed = train(nprocs, args, env={"MPIRL_FAULT": f"raise@0:{crash_at_update}"}, timeout=120)
    assert crashed.returncode != 0 and not (run_dir / "summary.json").exists()
    resumed = train(nprocs, args + ["--resume"], timeout=120).check()
    assert "resuming from" in resumed.output and resumed_from in resumed.output
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["global_steps"] == total
    return resumed


def resume_matches_straight_run(nprocs: int, argv, tmp_path: Path, crash_at_update: int,
                                total: int, resumed_from: str, timeout: int = 240):
    """Train ``argv(run_dir)`` once straight through and once crashing at ``crash_at_update``
    then resuming; check both end with bit-identical model parameters. Returns the two run dirs
    and the resumed Result, for further checks."""
    from tests.launch import train
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    train(nprocs, argv(straight), timeout=timeout).check()
    resumed = crash_then_resume(nprocs, argv(crashed), crash_at_update, total, resumed_from)
    one, two = final_params(straight), final_params(crashed)
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), f"{key} differs after the resume"
    return straight, crashed, resumed


# Small, fast runs: 4 envs x 16 steps per rank per update.
TINY = ["--num-envs", "4", "--num-steps", "16", "--eval-episodes", "2", "--eval-interval", "1000",
        "--no-tensorboard", "--log-interval", "1000"]


@pytest.fixture
def tiny():
    return list(TINY)


def signal_when_training(signum, run_dir: Path, after_updates: int):
    """on_start callback: send ``signum`` to the job once metrics show ``after_updates``."""
    def watch(proc):
        def run():
            metrics = run_dir / "metrics.jsonl"
            while proc.poll() is None:
                if metrics.exists() and len(metrics.read_text().splitlines()) >= after_updates:
                    os.kill(proc.pid, signum)
                    return
                time.sleep(0.05)
        threading.Thread(target=run, daemon=True).start()
    return watch
