"""The shipped presets (mpirl/presets): each loads, says where it comes from, sets only options
that exist with values that convert, and is chosen for the envs it names."""
import pytest

from mpirl import presets
from mpirl.config import FIELDS, convert, parse_args
from mpirl.errors import ConfigError

SHIPPED = [(algo, name) for algo in ("ppo", "dqn") for name in presets.names(algo)]


@pytest.mark.parametrize("algo,name", SHIPPED)
def test_a_shipped_preset_cites_its_source_and_sets_known_options(algo, name):
    preset = presets.load(algo, name)
    assert len(preset.source) > 40, "a preset says where its settings come from"
    assert preset.env_ids or preset.families
    for key, value in preset.options.items():
        assert key in FIELDS, key
        convert(key, value)                            # a value the option accepts
    for env_id in preset.env_ids:
        chosen = presets.for_env(algo, env_id)
        assert (chosen is not None and chosen.name == name) == preset.auto


def test_an_ids_own_preset_comes_before_its_familys_and_none_is_none():
    assert presets.family("HalfCheetah-v5") == "mujoco"
    assert presets.family("LunarLander-v3") == "box2d"
    assert presets.family("Acrobot-v1") == "classic"
    assert presets.family("NoSuchEnv-v0") is None
    assert presets.for_env("ppo", "HalfCheetah-v5").name == "HalfCheetah"   # its own, then:
    assert presets.for_env("ppo", "Hopper-v5").name == "mujoco"             # its family's
    assert presets.for_env("ppo", "CartPole-v1") is None         # the defaults train these
    assert presets.load("ppo", "cartpole-quick").auto is False   # (by name only)
    assert presets.for_env("ppo", "MountainCar-v0") is None
    assert presets.for_env("dqn", "MountainCar-v0").name == "MountainCar-v0"
    with pytest.raises(ConfigError, match="no such preset"):
        presets.load("ppo", "nope")


def test_a_multi_task_run_takes_the_family_preset_its_tasks_share_and_none_otherwise():
    assert presets.for_tasks("ppo", ["ALE/Pong-v5", "ALE/Breakout-v5"]).name == "atari"
    # an env's own preset is tuned to it alone; tasks of a family without one get the defaults
    assert presets.for_tasks("ppo", ["CartPole-v1", "Acrobot-v1"]) is None
    assert presets.for_tasks("ppo", ["ALE/Pong-v5", "CartPole-v1"]) is None
    cfg = parse_args(["--tasks", "ALE/Pong-v5:2,ALE/Breakout-v5"], n_ranks=3)
    assert cfg.preset == "atari" and cfg.sign_rewards and cfg.clip_coef == 0.1
    assert parse_args(["--tasks", "CartPole-v1,Acrobot-v1"], n_ranks=2).preset == "none"
    assert parse_args(["--tasks", "ALE/Pong-v5,ALE/Breakout-v5", "--preset", "none"],
                      n_ranks=2).preset == "none"


def test_the_mountaincar_dqn_preset_is_rl_zoos_settings_when_read_as_one_learner():
    """The zoo bench races SB3's DQN with the preset translated back to one learner: that must be
    rl-baselines3-zoo's hyperparams/dqn.yml entry the preset cites."""
    from mpirl import presets
    from mpirl.bench.zoo import sb3_dqn_settings
    settings = sb3_dqn_settings(presets.for_env("dqn", "MountainCar-v0"), ranks=2)
    assert settings == {"learning_rate": 4e-3, "batch_size": 128, "buffer_size": 10_000,
                        "learning_starts": 1_000, "gamma": 0.98, "train_freq": 16,
                        "gradient_steps": 8, "target_update_interval": 600,
                        "exploration_fraction": 0.2, "exploration_initial_eps": 1.0,
                        "exploration_final_eps": 0.07, "net_arch": [256, 256]}
