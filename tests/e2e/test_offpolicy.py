"""SAC and TD3 as users run them (--algo sac, td3; issue #22): tiny runs at 2 ranks with the exact
number of gradient steps --utd asks for, bitwise resume with --save-replay, an empty memory
without it, bad input, and SAC learning Pendulum-v1 with its preset."""
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.e2e.conftest import (
    crash_then_resume,
    final_params,
    read_metrics,
    read_summary,
)
from tests.launch import train

# Tiny runs: 1 env per rank (the off-policy default) stepped TRAIN_FREQUENCY times per update
# (given, so that the update count below holds whatever the default), a global batch of 64 split
# over the ranks, learning after 256 global steps; no evaluation or log line before the end.
RANKS, TRAIN_FREQUENCY = 2, 50
PER_STEP = 1 * RANKS                         # global env steps per act step: envs x ranks
PER_UPDATE = TRAIN_FREQUENCY * PER_STEP      # global env steps per update (metrics line): 100
TINY = ["--env-id", "Pendulum-v1", "--total-timesteps", "600", "--learning-starts", "256",
        "--batch-size", "64", "--hidden-sizes", "32,32", "--train-frequency",
        str(TRAIN_FREQUENCY), "--eval-episodes", "2", "--no-tensorboard", "--eval-interval",
        "100000", "--log-interval", "100000"]


def expected_gradient_steps(total: int, learning_starts: int, utd: float) -> int:
    """offpolicy.train's count: after each act step (PER_STEP global steps) that leaves the
    global step above learning_starts, utd x PER_STEP more steps are owed and every whole one is
    taken. 600 steps, learning after 256: the act steps ending at 258, 260, ..., 600 (172 of
    them) owe 2 x utd each, so 344 x utd."""
    learning_act_steps = total // PER_STEP - learning_starts // PER_STEP
    owed = utd * PER_STEP * learning_act_steps
    assert owed == int(owed)
    return int(owed)


def _tiny(algo: str, run_dir: Path, *extra: str) -> list[str]:
    return ["--algo", algo, "--run-dir", str(run_dir), *TINY, *extra]


@pytest.mark.parametrize("utd", [1.0, 0.5])
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_tiny_run_at_two_ranks_takes_utd_gradient_steps_per_global_step(algo, utd, tmp_path):
    run_dir = tmp_path / "run"
    res = train(RANKS, _tiny(algo, run_dir, "--checkpoint-interval", "100000", "--utd", str(utd)),
                timeout=120).check()
    assert res.output.count("done:") == 1
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["algo"] == algo
    assert summary["n_ranks"] == RANKS and summary["global_steps"] == 600
    assert summary["gradient_steps"] == expected_gradient_steps(600, 256, utd)
    assert summary["gradient_steps"] == {1.0: 344, 0.5: 172}[utd]
    assert np.isfinite(summary["eval_return_mean"])

    metrics = read_metrics(run_dir)
    assert [m["global_step"] for m in metrics] == [PER_UPDATE * (u + 1) for u in range(6)]
    # updates 1, 2: random play; 3 (steps 201-300): learning after 256, so 22 of its 50 act
    # steps owe 2 x utd; 4-6: all 50 of them
    assert [m["learned_this_update"] for m in metrics] == [0, 0] + [int(2 * utd * n) for n in
                                                                    (22, 50, 50, 50)]
    assert [m["gradient_steps"] for m in metrics] == list(
        np.cumsum([m["learned_this_update"] for m in metrics]))
    assert metrics[-1]["gradient_steps"] == summary["gradient_steps"]
    assert not any("critic_loss" in m for m in metrics[:2])
    learning = metrics[2:]
    for m in learning:
        assert np.isfinite(m["critic_loss"]) and np.isfinite(m["q_mean"]), m
        if algo == "sac":
            for key in ("actor_loss", "alpha", "entropy"):
                assert np.isfinite(m[key]), (key, m)
            assert m["alpha"] < 1.0         # autotuning moved the temperature down from 1
    # every update here takes 22 or more gradient steps, so the actor stepped in each (TD3's
    # delayed actor on every 2nd): each metrics line must report its loss, TD3's too
    with_actor = [m for m in learning if "actor_loss" in m]
    assert len(with_actor) == len(learning), \
        f"actor_loss in {len(with_actor)} of {len(learning)} metric lines while learning"
    assert all(np.isfinite(m["actor_loss"]) for m in with_actor)


def _checkpoint(run_dir: Path) -> dict:
    newest = max((Path(run_dir) / "checkpoints").glob("ckpt_*.pt"))
    return torch.load(newest, weights_only=True)


def _assert_equal_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), f"{what}: {key} differs"
        else:
            assert value == b[key], f"{what}: {key} differs"


def _deterministic(metrics: list[dict]) -> list[dict]:
    """Metric lines without the clock's numbers."""
    return [{k: v for k, v in m.items() if not (k.endswith("_s") or k == "sps")} for m in metrics]


# 6 updates of 100 global steps; learning from step 256 (in update 3); a checkpoint after update
# 3 (300 steps: 150 per rank, mid-episode, Pendulum's being 200 steps) with learning under way,
# and at the end; rank 0 fails at the start of update index 4 (after 400 steps), so the resumed
# run goes on from update 3's checkpoint.
RESUME = ["--checkpoint-interval", "3"]


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_resume_with_saved_replay_is_bitwise_identical_to_an_uninterrupted_run(algo, tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    train(RANKS, _tiny(algo, straight, *RESUME, "--save-replay"), timeout=120).check()
    resumed = crash_then_resume(RANKS, _tiny(algo, crashed, *RESUME, "--save-replay"),
                                crash_at_update=4, total=600,
                                resumed_from="ckpt_00000003.pt")
    assert "replay memory restored" in resumed.output
    assert "restarts empty" not in resumed.output
    assert "not bitwise identical" not in resumed.output   # Pendulum's env state restored
    for rank in range(RANKS):
        assert (crashed / "replay" / f"rank{rank}.npz").exists()

    a, b = final_params(straight), final_params(crashed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after the resume"
    one, two = _checkpoint(straight), _checkpoint(crashed)
    for follower in ("target_critic", "target_actor"):
        assert (follower in one["shared"]) == (follower == "target_critic" or algo == "td3")
        if follower in one["shared"]:
            _assert_equal_tensors(one["shared"][follower], two["shared"][follower], follower)
    _assert_equal_tensors(one["shared"]["optimizer"], two["shared"]["optimizer"], "optimizer")
    for rank in range(RANKS):   # each rank's torch generators (acting, learning) went on alike
        for name in ("acting", "learning"):
            assert torch.equal(one["ranks"][rank][name], two["ranks"][rank][name]), (rank, name)
    assert one["meta"]["gradient_steps"] == two["meta"]["gradient_steps"] == 344
    assert read_summary(straight)["eval_return_mean"] == read_summary(crashed)["eval_return_mean"]
    # every update's losses, replay sizes and episode statistics, line for line
    assert _deterministic(read_metrics(straight)) == _deterministic(read_metrics(crashed))


def test_resume_without_saved_replay_restarts_the_memory_empty(tmp_path):
    run_dir = tmp_path / "run"
    # 1,000 steps (10 updates), so that learning resumes 256 steps after the resume at 300
    args = _tiny("sac", run_dir, *RESUME, "--total-timesteps", "1000")
    resumed = crash_then_resume(RANKS, args, crash_at_update=5, total=1000,
                                resumed_from="ckpt_00000003.pt")
    assert "restarts empty" in resumed.output
    assert "replay memory restored" not in resumed.output
    assert not (run_dir / "replay").exists()
    metrics = read_metrics(run_dir)
    assert [m["global_step"] for m in metrics] == [PER_UPDATE * (u + 1) for u in range(10)]
    # the first update after the resume: its memory holds that update's steps alone
    assert metrics[3]["update"] == 4 and metrics[3]["replay_size"] <= PER_UPDATE
    assert metrics[2]["replay_size"] > 2 * PER_UPDATE                     # (before the crash)
    # learning resumes once 256 new global steps are in: after global step 300 + 256 = 556, in
    # update 6 (steps 501-600), 22 of whose act steps owe 2 each
    assert [m["learned_this_update"] for m in metrics] == [0, 0, 44, 0, 0, 44, 100, 100, 100,
                                                           100]
    # one per global step after learning starts: 300 - 256 = 44 before the checkpoint, and
    # 1000 - 556 = 444 after the resume
    assert read_summary(run_dir)["gradient_steps"] == 44 + 444


@pytest.mark.parametrize("args,message", [
    (["--algo", "sac", "--env-id", "CartPole-v1"],
     "CartPole-v1 has a Discrete action space; --algo sac needs Box"),
    (["--algo", "td3", "--env-id", "CartPole-v1"],
     "CartPole-v1 has a Discrete action space; --algo td3 needs Box"),
    (["--algo", "sac", "--env-id", "Pendulum-v1", "--batch-size", "512", "--learning-starts",
      "256"], "--batch-size 512 is larger than the 256 transitions"),
    (["--algo", "td3", "--env-id", "Pendulum-v1", "--batch-size", "63"],
     "--batch-size 63 (the global batch) must be a multiple of the 2 ranks that split it"),
])
def test_bad_offpolicy_input_is_one_clear_error_before_training(args, message, tmp_path):
    run_dir = tmp_path / "run"
    res = train(RANKS, [*args, "--run-dir", str(run_dir)], timeout=60)
    assert not res.timed_out, res.output
    assert res.returncode == 2, res.output
    assert res.output.count(message) == 1, res.output
    assert "Traceback" not in res.output
    assert not run_dir.exists()


# SAC with the shipped Pendulum-v1 preset (learning rate 1e-3, learning after 1,000 steps, the
# [256, 256] networks and the global batch of 256 of the off-policy defaults).
LEARN_STEPS = 4000


def test_sac_learns_pendulum_at_two_ranks_with_its_preset(tmp_path):
    run_dir = tmp_path / "run"
    res = train(RANKS, ["--algo", "sac", "--env-id", "Pendulum-v1", "--total-timesteps",
                        str(LEARN_STEPS), "--eval-episodes", "4", "--no-tensorboard",
                        "--run-dir", str(run_dir)], timeout=240).check()
    assert "(preset Pendulum-v1)" in res.output
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["global_steps"] == LEARN_STEPS
    assert summary["gradient_steps"] == LEARN_STEPS - 1000
    assert summary["eval_return_mean"] >= -250, summary
