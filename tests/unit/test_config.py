"""Options: defaults < YAML < command line, conversion, and validation messages."""
import pytest

from mpirl.config import Config, build_parser
from mpirl.errors import ConfigError
from tests.configs import validated


def test_defaults_then_yaml_then_command_line(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("total_timesteps: 5000\nlearning-rate: 0.001\nhidden_sizes: [32, 16]\n"
                        "anneal_lr: false\n")
    cfg = validated(["--config", str(cfg_file), "--learning-rate", "3e-4"])
    assert cfg.total_timesteps == 5000               # from YAML
    assert cfg.learning_rate == 3e-4                 # command line wins
    assert cfg.hidden_sizes == (32, 16)
    assert cfg.anneal_lr is False
    assert cfg.num_envs == Config().num_envs         # default


def test_command_line_conversions():
    cfg = validated(["--total-timesteps", "1e5", "--hidden-sizes", "128,64,32", "--no-norm-adv",
                      "--target-return", "none", "--target-kl", "0.02"])
    assert cfg.total_timesteps == 100_000 and cfg.hidden_sizes == (128, 64, 32)
    assert cfg.norm_adv is False and cfg.target_return is None and cfg.target_kl == 0.02


@pytest.mark.parametrize("argv,message", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--learning-rate", "-1"], "--learning-rate must be > 0"),
    (["--total-timesteps", "0"], "--total-timesteps must be >= 1"),
    (["--num-envs", "two"], "--num-envs: 'two' is not a valid int"),
    (["--gamma", "1.5"], "--gamma must lie in [0, 1]"),
    (["--algo", "a2c"], "--algo must be one of ppo, dqn"),
    (["--algo", "dqn", "--buffer-size", "10", "--batch-size", "64"], "at least --batch-size"),
    (["--per-alpha", "2"], "--per-alpha must lie in [0, 1]"),
    (["--resume"], "--resume needs --run-dir"),
    (["--hidden-sizes", "0"], "--hidden-sizes needs one or more positive widths"),
    (["--seed", "-1"], "--seed must be >= 0, not -1"),
    (["--total-timesteps", "1e400"], "--total-timesteps: '1e400' is not a valid int"),
    (["--num-steps", "1.5e0"], "--num-steps: '1.5e0' is not a valid int (not an integer)"),
    (["--target-kl", "0"], "--target-kl must be a finite number > 0 (or none), not 0.0"),
    (["--target-kl", "nan"], "--target-kl must be a finite number > 0 (or none), not nan"),
    (["--popart-beta", "0"], "--popart-beta must lie in (0, 1], not 0.0"),
    (["--popart-beta", "1.5"], "--popart-beta must lie in (0, 1], not 1.5"),
    (["--num-steps", "2", "--num-envs", "2", "--num-minibatches", "5"],
     "--num-minibatches (5) must be at most --num-steps x --num-envs (2 x 2 = 4)"),
    (["--num-steps", "4", "--num-minibatches", "200"],   # --num-envs resolved: 32 for ppo
     "--num-minibatches (200) must be at most --num-steps x --num-envs (4 x 32 = 128)"),
])
def test_bad_values_give_one_clear_message(argv, message):
    with pytest.raises(ConfigError) as err:
        validated(argv)
    assert message in str(err.value)


def test_values_at_the_edge_of_the_new_checks_pass():
    cfg = validated(["--seed", "0", "--num-steps", "1e1", "--total-timesteps", "2.5e5",
                      "--target-kl", "none", "--popart-beta", "1", "--num-envs", "2",
                      "--num-minibatches", "20"])
    assert (cfg.seed, cfg.num_steps, cfg.total_timesteps) == (0, 10, 250_000)
    assert cfg.target_kl is None and cfg.popart_beta == 1.0 and cfg.num_minibatches == 20
    # --num-minibatches is a PPO option: DQN ignores it
    assert validated(["--algo", "dqn", "--num-minibatches", "1000"]).num_minibatches == 1000


def test_a_problem_found_by_two_checks_is_listed_once():
    with pytest.raises(ConfigError) as err:
        validated(["--tasks", "CartPole-v1,Acrobot-v1", "--popart-beta", "2"])
    assert str(err.value).count("--popart-beta must lie in (0, 1]") == 1


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as err:
        validated(["--learning-rate", "0", "--num-steps", "0"])
    assert "--learning-rate" in str(err.value) and "--num-steps" in str(err.value)


def test_yaml_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("total_timesteps: [1, 2\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        validated(["--config", str(bad)])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("totl_timesteps: 5\n")
    with pytest.raises(ConfigError, match="unknown option.*totl_timesteps"):
        validated(["--config", str(unknown)])
    with pytest.raises(ConfigError, match="cannot read config file"):
        validated(["--config", str(tmp_path / "missing.yaml")])
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        validated(["--config", str(listy)])


def test_help_lists_every_option_with_default_and_meaning():
    text = build_parser().format_help()
    for name in ("--env-id", "--algo", "--total-timesteps", "--num-envs", "--seed", "--run-dir",
                 "--resume", "--target-return", "--eval-episodes", "--hidden-sizes", "--device",
                 "--learning-rate", "--num-steps", "--gamma", "--gae-lambda", "--num-minibatches",
                 "--update-epochs", "--clip-coef", "--ent-coef", "--vf-coef", "--max-grad-norm",
                 "--anneal-lr", "--vector-mode"):
        assert name in text, name
    flat = " ".join(text.split())
    assert "gymnasium environment id (any registered id) (default: CartPole-v1)" in flat


@pytest.mark.parametrize("damage", ["no run.json", "malformed config.yaml", "config not a mapping"])
def test_resuming_a_damaged_run_dir_is_one_clear_error(tmp_path, damage):
    from mpirl.train import create_run_dir
    run_dir = tmp_path / "run"
    create_run_dir(validated(["--run-dir", str(run_dir)]), 1)   # a fresh run's files
    if damage == "no run.json":
        (run_dir / "run.json").unlink()
    else:
        (run_dir / "config.yaml").write_text("env_id: [unclosed" if damage.startswith("malformed")
                                             else "- a list\n")
    with pytest.raises(ConfigError, match="cannot read the run's config.yaml and run.json"):
        validated(["--run-dir", str(run_dir), "--resume"])
