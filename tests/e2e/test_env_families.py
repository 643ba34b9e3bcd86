"""Beyond CartPole (#17): the trainer on Box2D and MuJoCo tasks, a missing extra reported before
any rank trains, and learning with the presets and with the general defaults."""
import pytest

from tests.e2e.conftest import read_metrics, read_summary
from tests.launch import train

# Blocks a package the way an absent one fails: ``import NAME`` raises ImportError.
WITHOUT = ("import sys, runpy; sys.modules[{module!r}] = None; sys.argv[0] = 'mpirl.train'; "
           "runpy.run_module('mpirl.train', run_name='__main__')")


@pytest.mark.parametrize("env_id,module,extra", [("HalfCheetah-v5", "mujoco", "mujoco"),
                                                 ("LunarLander-v3", "Box2D", "box2d")])
def test_a_missing_extra_is_named_once_before_any_rank_trains(env_id, module, extra, tmp_path):
    from tests.launch import mpirun
    run_dir = tmp_path / "run"
    res = mpirun(2, ["-c", WITHOUT.format(module=module), "--env-id", env_id, "--run-dir",
                     str(run_dir)], timeout=120)
    assert res.returncode == 2, res.output
    assert res.output.count("mpirl: error:") == 1, res.output
    assert f"{env_id} needs the {extra} extra" in res.output
    assert f"pip install 'mpirl[{extra}]'" in res.output
    assert "Traceback" not in res.output and not run_dir.exists()


@pytest.mark.parametrize("env_id,preset", [("HalfCheetah-v5", "HalfCheetah"),
                                           ("LunarLander-v3", "LunarLander")])
def test_a_short_two_rank_run_on_mujoco_and_box2d(env_id, preset, tmp_path):
    run_dir = tmp_path / "run"
    res = train(2, ["--env-id", env_id, "--total-timesteps", "4096", "--rollout", "2x512",
                    "--num-minibatches", "4", "--update-epochs", "2", "--eval-episodes", "2",
                    "--no-tensorboard", "--run-dir", str(run_dir)], timeout=240).check()
    assert f"(preset {preset})" in res.output
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["global_steps"] == 4096
    assert summary["eval_return_mean"] is not None
    assert (run_dir / "config.yaml").read_text().count(f"preset: {preset}") == 1
    metrics = read_metrics(run_dir)
    assert len(metrics) == 4 and all(m["global_step"] == 1024 * (i + 1)
                                     for i, m in enumerate(metrics))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("preset", ["auto", "none"])
def test_acrobot_learns_at_two_ranks_with_its_preset_and_with_the_defaults(preset, seed,
                                                                             tmp_path):
    run_dir = tmp_path / "run"
    train(2, ["--env-id", "Acrobot-v1", "--preset", preset, "--seed", str(seed),
              "--total-timesteps", "200000", "--target-return", "-100", "--stop-on-solve",
              "--eval-interval", "5", "--no-tensorboard", "--run-dir", str(run_dir)],
          timeout=300).check()
    summary = read_summary(run_dir)
    assert summary["solved_at_step"] is not None, summary
    assert summary["eval_return_mean"] >= -100


@pytest.mark.slow
def test_inverted_pendulum_learns_to_balance_for_the_whole_episode(tmp_path):
    run_dir = tmp_path / "run"
    train(2, ["--env-id", "InvertedPendulum-v5", "--total-timesteps", "200000",
              "--target-return", "1000", "--stop-on-solve", "--eval-interval", "5",
              "--no-tensorboard", "--run-dir", str(run_dir)], timeout=600).check()
    summary = read_summary(run_dir)
    assert summary["solved_at_step"] is not None and summary["eval_return_mean"] >= 1000, summary


@pytest.mark.parametrize("value_net", ["shared", "separate"])
def test_reward_scaling_resumes_bit_for_bit(value_net, tmp_path):
    """Pendulum-v1 with the defaults for Box actions (observation and reward normalisation on),
    the value on the policy's trunk or on its own network: crashed on rank 0 and resumed, the
    run ends with the uninterrupted run's parameters and the same reward statistics, every
    rank's discounted returns restored with its env."""
    import torch
    from tests.e2e.conftest import crash_then_resume, final_params
    args = ["--env-id", "Pendulum-v1", "--preset", "none", "--rollout", "4x64", "--num-minibatches", "4",
            "--update-epochs", "2", "--total-timesteps", "2560", "--eval-episodes", "2",
            "--eval-interval", "1000", "--checkpoint-interval", "3", "--no-tensorboard",
            "--value-net", value_net]
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(2, [*args, "--run-dir", str(whole)], timeout=180).check()
    resumed = crash_then_resume(2, [*args, "--run-dir", str(split)], crash_at_update=7,
                                total=2560, resumed_from="ckpt_00000006")
    assert "fresh episodes" not in resumed.output
    a, b = final_params(whole), final_params(split)
    assert any(key.startswith("critic.") for key in a) == (value_net == "separate")
    assert all(a[key].equal(b[key]) for key in a)

    def newest(run_dir):
        path = sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))[-1]
        return torch.load(path, weights_only=True)
    ca, cb = newest(whole), newest(split)
    assert ca["shared"]["reward_scaler"] == cb["shared"]["reward_scaler"]
    assert ca["shared"]["reward_scaler"]["count"] > 0
    for ra, rb in zip(ca["ranks"], cb["ranks"]):
        assert ra["env"]["discounted_return"].equal(rb["env"]["discounted_return"])
