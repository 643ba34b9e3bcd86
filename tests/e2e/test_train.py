"""The trainer as users run it: rank scaling, failure, resume, learning, determinism."""

import pytest

from tests.e2e.conftest import crash_then_resume, final_params, read_metrics, read_summary
from tests.launch import train


@pytest.mark.parametrize("nprocs", [0, 1, 2, 4, 8], ids=lambda n: f"np{n}" if n else "no-mpirun")
def test_trainer_runs_at_each_rank_count_and_writes_a_well_formed_run_dir(nprocs, tmp_path, tiny):
    run_dir = tmp_path / "run"
    ranks = max(nprocs, 1)
    res = train(nprocs, [*tiny, "--total-timesteps", str(2048), "--run-dir", str(run_dir),
                         "--tensorboard", "--eval-interval", "4"], timeout=240).check()
    summary = read_summary(run_dir)
    per_update = 4 * 16 * ranks
    assert summary["n_ranks"] == ranks
    assert summary["global_steps"] == -(-2048 // per_update) * per_update
    for key in ("wall_time_s", "sps", "eval_return_mean", "solved_at_step", "solved_at_time_s"):
        assert key in summary
    assert summary["sps"] > 0 and summary["eval_return_mean"] > 0
    metrics = read_metrics(run_dir)
    assert [m["global_step"] for m in metrics] == [per_update * (i + 1) for i in range(len(metrics))]
    for key in ("time_s", "sps", "policy_loss", "value_loss", "comm_time_s"):
        assert key in metrics[-1]
    assert any("episode_return_mean" in m for m in metrics)
    assert (run_dir / "config.yaml").read_text().startswith("env_id: CartPole-v1")
    assert any(p.name.startswith("events.out.tfevents") for p in (run_dir / "tensorboard").iterdir())
    assert list((run_dir / "checkpoints").glob("ckpt_*.pt"))
    assert res.output.count("done:") == 1   # rank 0 alone reports


def test_a_minibatch_emptied_by_dropped_reset_steps_is_skipped_not_a_crash(tmp_path, tiny):
    # 2 rows per update in 2 minibatches: after each episode's end the reset step is dropped,
    # leaving 1 row, so one minibatch is empty (CartPole's random episodes end every ~20 steps)
    run_dir = tmp_path / "run"
    train(0, [*tiny, "--num-envs", "1", "--num-steps", "2", "--num-minibatches", "2",
              "--total-timesteps", "400", "--run-dir", str(run_dir)], timeout=120).check()
    assert read_summary(run_dir)["global_steps"] == 400


def test_exception_on_one_rank_ends_the_job_promptly_naming_the_rank(tmp_path, tiny):
    res = train(2, ["--total-timesteps", "100000", "--run-dir", str(tmp_path / "run"), *tiny],
                env={"MPIRL_FAULT": "raise@1:3"}, timeout=60)
    assert not res.timed_out and res.returncode != 0
    assert res.seconds < 30
    assert "[mpirl rank 1] failed: InjectedFault: injected exception at update 3" in res.output


def test_resume_after_a_crash_reaches_the_full_step_count(tmp_path, tiny):
    run_dir = tmp_path / "run"
    args = ["--total-timesteps", "3072", "--run-dir", str(run_dir), "--checkpoint-interval", "4",
            *tiny]
    crash_then_resume(2, args, crash_at_update=10, total=3072, resumed_from="ckpt_00000008.pt")
    steps = [m["global_step"] for m in read_metrics(run_dir)]
    # update 9 ran before the crash and again after the resume: its line is there once
    assert steps == [128 * (u + 1) for u in range(3072 // 128)]


def test_same_seed_and_ranks_give_bitwise_equal_parameters(tmp_path, tiny):
    runs = []
    for name in ("a", "b"):
        train(2, ["--total-timesteps", "2048", "--run-dir", str(tmp_path / name), "--seed", "3",
                  *tiny], timeout=120).check()
        runs.append(final_params(tmp_path / name))
    for key in runs[0]:
        assert runs[0][key].equal(runs[1][key]), key
    train(2, ["--total-timesteps", "2048", "--run-dir", str(tmp_path / "c"), "--seed", "4",
              *tiny], timeout=120).check()
    other = final_params(tmp_path / "c")
    assert any(not runs[0][k].equal(other[k]) for k in other)


@pytest.mark.slow
def test_ppo_learns_cartpole_at_two_ranks(tmp_path):
    run_dir = tmp_path / "run"
    train(2, ["--total-timesteps", "150000", "--run-dir", str(run_dir), "--stop-on-solve",
              "--no-tensorboard"], timeout=300).check()
    summary = read_summary(run_dir)
    assert summary["solved_at_step"] is not None, summary
    assert summary["eval_return_mean"] >= 475
