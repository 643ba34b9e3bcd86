import json
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


# Small, fast runs: 4 envs x 16 steps per rank per update.
TINY = ["--num-envs", "4", "--num-steps", "16", "--eval-episodes", "2", "--eval-interval", "1000",
        "--no-tensorboard", "--log-interval", "1000"]


@pytest.fixture
def tiny():
    return list(TINY)
