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
    assert cfg.num_envs == validated([]).num_envs    # not given: as without the file


def test_defaults_then_preset_then_yaml_then_command_line(tmp_path):
    """A preset (here Acrobot-v1's, chosen by the env id) overrides the defaults; --config and
    the command line override the preset; --preset none keeps the defaults."""
    defaults = Config()
    plain = validated(["--env-id", "Acrobot-v1", "--preset", "none"])
    assert plain.preset == "none" and plain.learning_rate == defaults.learning_rate == 3e-4
    assert (plain.num_envs, plain.num_steps) == (8, 128)    # the 8x128 rollout on one rank
    assert plain.anneal_lr is True and plain.ent_coef == 0.01
    preset = validated(["--env-id", "Acrobot-v1"])
    assert preset.preset == "Acrobot-v1" and preset.anneal_lr is False and preset.ent_coef == 0
    assert (preset.num_envs, preset.num_steps, preset.gae_lambda) == (16, 256, 0.94)
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("learning_rate: 0.001\nupdate_epochs: 3\n")
    from_file = validated(["--env-id", "Acrobot-v1", "--config", str(cfg_file)])
    assert (from_file.learning_rate, from_file.update_epochs, from_file.num_steps) == (1e-3, 3, 256)
    line = validated(["--env-id", "Acrobot-v1", "--config", str(cfg_file), "--update-epochs", "2"])
    assert (line.learning_rate, line.update_epochs) == (1e-3, 2)
    named = validated(["--env-id", "CartPole-v1", "--preset", "Acrobot-v1"])
    assert named.preset == "Acrobot-v1" and named.gae_lambda == 0.94
    assert validated([]).preset == "none"        # CartPole-v1 trains with the defaults
    with pytest.raises(ConfigError, match="--preset nope: no such preset for --algo ppo"):
        validated(["--preset", "nope"])


def test_defaults_follow_the_actions_and_the_rollout_is_split_over_the_ranks():
    from mpirl.config import parse_args
    box = parse_args(["--env-id", "Pendulum-v1", "--preset", "none"], n_ranks=2)  # CleanRL's
    assert (box.num_minibatches, box.update_epochs, box.ent_coef) == (32, 10, 0.0)
    assert (box.rollout, box.num_envs, box.num_steps) == ("1x2048", 1, 1024)
    discrete = parse_args(["--env-id", "Acrobot-v1", "--preset", "none"], n_ranks=2)
    assert (discrete.num_minibatches, discrete.update_epochs, discrete.ent_coef) == (4, 4, 0.01)
    for n_ranks, share in ((1, (8, 128)), (2, (4, 128)), (8, (1, 128)), (16, (1, 64)),
                           (3, (2, 171))):
        cfg = parse_args(["--env-id", "MountainCar-v0"], n_ranks=n_ranks)
        assert (cfg.num_envs, cfg.num_steps) == share, n_ranks
    given = parse_args(["--env-id", "MountainCar-v0", "--num-envs", "3"], n_ranks=2)
    assert (given.num_envs, given.num_steps) == (3, 128)       # a rank's own, as given
    assert parse_args(["--tasks", "CartPole-v1,Acrobot-v1"]).normalize_reward is False
    with pytest.raises(ConfigError, match="--rollout '8y128': expected ENVSxSTEPS"):
        parse_args(["--rollout", "8y128"])


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
    (["--num-steps", "4", "--num-minibatches", "200"],   # --num-envs resolved: 8 for ppo
     "--num-minibatches (200) must be at most --num-steps x --num-envs (4 x 8 = 32)"),
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
