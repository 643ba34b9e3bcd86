"""DQN as users run it: each replay-sharing mode at 2 ranks, learning, resume, bad input."""
import pytest

from mpirl.bench.dqn import SOLVE_ARGS
from tests.e2e.conftest import (
    crash_then_resume,
    read_metrics,
    read_summary,
    resume_matches_straight_run,
)
from tests.launch import train

# Small, fast runs: 4 envs per rank, learning after 256 global steps.
TINY_DQN = ["--algo", "dqn", "--num-envs", "4", "--learning-starts", "256", "--batch-size", "32",
            "--eval-episodes", "2", "--eval-interval", "1000", "--no-tensorboard",
            "--log-interval", "1000"]


# each mode also exercises a variant: uniform sharded replay; dueling, plain-max, Polyak targets
VARIANTS = {"allgather": [], "sharded": ["--no-prioritized"],
            "none": ["--dueling", "--no-double-q", "--tau", "0.5", "--target-network-frequency", "1"]}


@pytest.mark.parametrize("mode", ["allgather", "sharded", "none"])
def test_dqn_runs_at_two_ranks_in_each_sharing_mode(mode, tmp_path):
    run_dir = tmp_path / "run"
    res = train(2, ["--total-timesteps", "2048", "--run-dir", str(run_dir), "--replay-sharing",
                    mode, "--samples-per-insert", "4", *VARIANTS[mode], *TINY_DQN],
                timeout=180).check()
    summary = read_summary(run_dir)
    per_update = 4 * 4 * 2                     # train_frequency x envs x ranks
    assert summary["status"] == "completed" and summary["algo"] == "dqn"
    assert summary["n_ranks"] == 2 and summary["replay_sharing"] == mode
    assert summary["global_steps"] == -(-2048 // per_update) * per_update
    # the rate limiter held learning at 4 samples per inserted step (tolerance 0.5), which
    # fixes the number of gradient steps of N x B = 64 samples each
    assert summary["samples_per_insert"] == pytest.approx(4.0, rel=0.1)
    expected_steps = 4.0 * (summary["global_steps"] - 256) / 64
    assert summary["gradient_steps"] == pytest.approx(expected_steps, rel=0.1)
    metrics = read_metrics(run_dir)
    assert [m["global_step"] for m in metrics] == \
        [per_update * (i + 1) for i in range(len(metrics))]
    for key in ("td_loss", "q_mean", "epsilon", "beta", "replay_size", "gradient_steps"):
        assert key in metrics[-1], key
    size = metrics[-1]["replay_size"]
    # allgather: rank 0's memory holds both ranks' transitions; the others only its own
    assert (size > 1500) if mode == "allgather" else (700 < size < 1100)
    assert res.output.count("done:") == 1


def test_dqn_without_mpirun_and_without_rate_limiter_takes_fixed_gradient_steps(tmp_path):
    run_dir = tmp_path / "run"
    train(0, ["--total-timesteps", "1024", "--run-dir", str(run_dir), "--samples-per-insert", "0",
              "--gradient-steps", "3", *TINY_DQN], timeout=120).check()
    summary = read_summary(run_dir)
    metrics = read_metrics(run_dir)
    learning = [m for m in metrics if m["global_step"] >= 256]   # 16 steps per update
    assert summary["n_ranks"] == 1 and summary["samples_per_insert"] is None
    assert summary["gradient_steps"] == 3 * len(learning)
    assert metrics[0]["epsilon"] == 1.0 and metrics[-1]["epsilon"] < metrics[0]["epsilon"]


def test_dqn_learns_cartpole_at_two_ranks(tmp_path):
    run_dir = tmp_path / "run"
    train(2, [*SOLVE_ARGS, "--total-timesteps", "30000", "--run-dir", str(run_dir)],
          timeout=240).check()
    summary = read_summary(run_dir)
    assert summary["solved_at_step"] is not None, summary
    assert summary["eval_return_mean"] >= 475


def test_dqn_resumes_with_an_empty_memory_and_says_so(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--total-timesteps", "1536", "--run-dir", str(run_dir), "--checkpoint-interval", "8",
            *TINY_DQN]
    resumed = crash_then_resume(2, args, crash_at_update=10, total=1536,
                                resumed_from="ckpt_00000008.pt")
    assert "replay memory was not saved (--save-replay keeps it); it restarts empty" in \
        resumed.output
    steps = [m["global_step"] for m in read_metrics(run_dir)]
    # update 9 ran before the crash and again after the resume: its line is there once
    assert steps == [32 * (u + 1) for u in range(1536 // 32)]


def test_dqn_with_saved_replay_resumes_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    """--save-replay: each rank's memory (records, priorities, the n-step adder's waiting steps,
    the sharing's generators) and the rate limiter's counts go on from the checkpoint. (Sharded:
    the sampling generators matter; allgather memories are checked on Pong's frames.)"""
    def args(run_dir):
        return ["--total-timesteps", "1536", "--run-dir", str(run_dir), "--checkpoint-interval",
                "12", "--replay-sharing", "sharded", "--prioritized", "--n-step", "3",
                "--save-replay", *TINY_DQN]
    straight, crashed, resumed = resume_matches_straight_run(
        2, args, tmp_path, crash_at_update=14, total=1536, resumed_from="ckpt_00000012.pt")
    assert "replay memory restored" in resumed.output and "fresh episodes" not in resumed.output
    clockless = [[{k: v for k, v in m.items() if not (k.endswith("_s") or k == "sps")}
                  for m in read_metrics(run)] for run in (straight, crashed)]
    assert clockless[0] == clockless[1]


@pytest.mark.parametrize("args,message", [
    (["--buffer-size", "100", "--batch-size", "128"],
     "--buffer-size (100) must be at least --batch-size (128)"),
    (["--per-alpha", "1.5"], "--per-alpha must lie in [0, 1], not 1.5"),
    (["--per-beta", "-0.1"], "--per-beta must lie in [0, 1], not -0.1"),
    (["--replay-sharing", "broadcast"], "--replay-sharing must be one of allgather, sharded, none"),
    (["--env-id", "Pendulum-v1"], "Pendulum-v1 has a Box action space; --algo dqn needs Discrete"),
])
def test_bad_dqn_input_is_one_clear_error_before_training(args, message, tmp_path):
    run_dir = tmp_path / "run"
    res = train(2, ["--algo", "dqn", "--run-dir", str(run_dir), *args], timeout=60)
    assert res.returncode == 2, res.output
    assert res.output.count(message) == 1, res.output
    assert "Traceback" not in res.output
    assert not run_dir.exists()
