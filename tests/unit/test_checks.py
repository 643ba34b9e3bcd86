"""One validation pass (mpirl.checks): every problem of a configuration for a world size, found
together and reported at once."""
import pytest

from mpirl.checks import check, problems
from mpirl.config import parse_args
from mpirl.errors import ConfigError


def test_every_kind_of_problem_is_reported_in_one_message():
    cfg = parse_args(["--gamma", "3", "--env-id", "NoSuchEnv-v9", "--pipeline-stages", "2",
                      "--algo", "dqn"])
    found = problems(cfg, n_ranks=3)
    expected = ["--gamma must lie in [0, 1], not 3.0",                  # an option's value
                "unknown environment 'NoSuchEnv-v9'",                   # the environment
                "3 ranks cannot form pipelines of --pipeline-stages 2",  # the layout
                "--pipeline-stages > 1 is implemented for --algo ppo only"]
    for part in expected:
        assert sum(part in p for p in found) == 1, (part, found)
    with pytest.raises(ConfigError) as err:
        check(cfg, n_ranks=3)
    assert str(err.value).startswith("invalid configuration:")
    assert all(str(err.value).count(part) == 1 for part in expected)


def test_tasks_resume_and_slurm_problems_join_the_same_list(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    cfg = parse_args(["--tasks", "CartPole-v1,Pendulum-v1,Acrobot-v1", "--resume", "--run-dir",
                      str(tmp_path / "nowhere")])
    found = problems(cfg, n_ranks=2)
    for part in ("SLURM_NTASKS=4", "Pendulum-v1 has a Box action space",
                 "3 tasks but only 2 rank(s)", "run dir " + str(tmp_path / "nowhere") +
                 " does not exist"):
        assert sum(part in p for p in found) == 1, (part, found)


def test_a_good_configuration_has_no_problem():
    assert problems(parse_args([]), n_ranks=8) == []
    assert problems(parse_args(["--tasks", "CartPole-v1,Acrobot-v1", "--algo", "dqn"]), 2) == []
