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


@pytest.mark.parametrize("args,n_ranks,message", [
    (["--learners", "1"], 1, "--algo impala with --learners 1 needs at least 2 ranks"),
    (["--learners", "2"], 5, "the 3 actors of 5 ranks do not divide evenly among 2 learners"),
    (["--learners", "0"], 3, "--learners must be >= 1, not 0"),
    (["--queue-depth", "0"], 3, "--queue-depth must be >= 1, not 0"),
    (["--vtrace-rho-clip", "0"], 3, "--vtrace-rho-clip must be > 0"),
    (["--tasks", "CartPole-v1,Acrobot-v1"], 3, "--tasks is implemented for --algo ppo and dqn, "
                                               "not --algo impala"),
])
def test_impala_layouts_and_options_that_cannot_work(args, n_ranks, message):
    found = problems(parse_args(["--algo", "impala", *args]), n_ranks)
    assert sum(message in p for p in found) == 1, found


@pytest.mark.parametrize("n_ranks,learners", [(2, 1), (3, 1), (4, 2), (6, 2), (6, 3)])
def test_impala_layouts_that_work(n_ranks, learners):
    cfg = parse_args(["--algo", "impala", "--learners", str(learners)])
    assert problems(cfg, n_ranks) == []
    assert cfg.normalize_reward and cfg.max_grad_norm == 40.0   # IMPALA's own defaults
    assert (cfg.num_envs, cfg.num_steps) == (8, 32)   # an actor's block, not split over ranks


def test_impala_takes_box_actions():
    assert problems(parse_args(["--algo", "impala", "--env-id", "Pendulum-v1"]), 2) == []


def test_a_straggler_fault_names_its_rank_and_milliseconds(monkeypatch):
    from mpirl import faults
    monkeypatch.setattr(faults, "_FAULT", faults.Fault.parse("slow@3:20"))
    assert faults.step_delay_s(3) == pytest.approx(0.02) and faults.step_delay_s(2) == 0.0
    assert not faults.at("update", 3, 0)   # slows down; never fails a point
