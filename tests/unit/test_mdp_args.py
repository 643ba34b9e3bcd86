"""The options of ``python -m mpirl.mdp``: what is accepted and the one message for what is not."""
import pytest

from mpirl.errors import ConfigError
from mpirl.mdp.__main__ import parse
from mpirl.mdp.mdp import GridWorld, RandomMDP, TableMDP


def test_defaults_to_frozenlake_and_folds_env_options_into_kwargs():
    args, source = parse([], 1)
    assert args.env == "FrozenLake-v1" and isinstance(source, TableMDP) and source.n_states == 16
    args, source = parse(["--map-name", "8x8", "--no-is-slippery", "--env-kwargs", "render_mode=None"], 4)
    assert args.env_kwargs == {"map_name": "8x8", "is_slippery": False, "render_mode": None}
    assert source.n_states == 64 and (source.table.prob == 1.0).all()


def test_generated_mdps():
    _, source = parse(["--random-states", "50", "--branching", "2", "--seed", "3"], 2)
    assert isinstance(source, RandomMDP) and (source.n_actions, source.branching) == (4, 2)
    _, source = parse(["--gridworld", "5", "--slip", "0"], 2)
    assert isinstance(source, GridWorld) and source.n_states == 25 and source.slip == 0


@pytest.mark.parametrize("argv,message", [
    (["--env", "CartPole-v1"], "has no transition table P"),
    (["--env", "NoSuchEnv-v0"], "cannot make it"),
    (["--map-name", "5x5"], "cannot make it"),
    (["--gamma", "1"], "--gamma must lie in [0, 1)"),
    (["--gamma", "-0.1"], "--gamma must lie in [0, 1)"),
    (["--gamma", "nan"], "--gamma must lie in [0, 1)"),
    (["--tol", "0"], "--tol must be > 0"),
    (["--tol=-1e-3"], "--tol must be > 0"),
    (["--random-states", "3"], "fewer than the 4 ranks"),
    (["--env", "Taxi-v4", "--gridworld", "4"], "choose one MDP"),
    (["--gridworld", "4", "--is-slippery"], "--is-slippery apply only to --env"),
    (["--branching", "3"], "--branching apply only to --random-states"),
    (["--random-states", "10", "--branching", "0"], "--branching must be >= 1"),
    (["--env-kwargs", "8x8"], "expected key=value"),
    (["--method", "sarsa"], "invalid choice"),
    (["--eval-episodes", "-1"], "--eval-episodes must be >= 0"),
])
def test_bad_input_raises_one_clear_config_error(argv, message):
    with pytest.raises(ConfigError, match=None) as info:
        parse(argv, 4)
    assert message in str(info.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as info:
        parse(["--gamma", "2", "--tol", "0"], 1)
    text = str(info.value)
    assert text.startswith("invalid options:") and "--gamma" in text and "--tol" in text
