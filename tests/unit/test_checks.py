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


def test_a_replay_memory_must_fit_its_ranks_share_of_the_node(monkeypatch):
    """Sized per rank from the env's transition (pixels: a frame and its slot), against the
    node's available memory split over the ranks on it; the largest size that fits is named."""
    import mpirl.checks as checks
    monkeypatch.setattr(checks, "available_memory_bytes", lambda: 8e9)
    atari = parse_args(["--algo", "dqn", "--env-id", "ALE/Breakout-v5", "--buffer-size",
                        "1000000"])
    per_transition = checks.replay_bytes(atari)(atari.buffer_size) / atari.buffer_size
    assert 84 * 84 < per_transition < 1.1 * 84 * 84
    assert checks.replay_memory_problems(atari, ranks_on_node=1) == []
    (found,) = checks.replay_memory_problems(atari, ranks_on_node=2)
    assert "needs 7.1 GB" in found and "8.0 GB available for its 2 rank(s) (4.0 GB each)" in found
    fits = int(found.split("at most ")[1].split(", or")[0].replace(",", ""))
    for size, ok in ((fits, True), (fits + 1, False)):
        cfg = parse_args(["--algo", "dqn", "--env-id", "ALE/Breakout-v5", "--buffer-size",
                          str(size)])
        assert (checks.replay_memory_problems(cfg, ranks_on_node=2) == []) == ok
    # 1e6 transitions over 2 ranks as one sharded memory: 500,000 a rank, about 3.5 GB each
    sharded = parse_args(["--algo", "dqn", "--env-id", "ALE/Breakout-v5", "--buffer-size",
                          "500000", "--replay-sharing", "sharded"])
    assert checks.replay_memory_problems(sharded, ranks_on_node=2) == []
    # vector observations: the record's bytes; PPO keeps no memory
    cartpole = parse_args(["--algo", "dqn", "--buffer-size", "1000000000"])
    assert checks.replay_memory_problems(cartpole, ranks_on_node=1)
    assert checks.replay_memory_problems(parse_args(["--buffer-size", "1000000000"]), 1) == []


def test_the_checks_import_neither_torch_nor_mpi():
    """Bad input is answered before the heavy imports (a fraction of a second)."""
    import subprocess
    import sys
    code = ("import sys, mpirl.checks as c; from mpirl.config import parse_args; "
            "c.problems(parse_args(['--algo', 'dqn', '--env-id', 'ALE/Pong-v5']), 2); "
            "print('torch' in sys.modules, 'mpi4py.MPI' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"]


@pytest.mark.parametrize("args,message", [
    (["--algo", "dqn"], "--value-net separate is an actor-critic's (--algo ppo or impala), "
                        "not --algo dqn's"),
    (["--tasks", "CartPole-v1,Acrobot-v1"], "--value-net separate cannot be combined with --tasks"),
    (["--pipeline-stages", "2"], "--value-net separate cannot be cut into --pipeline-stages"),
])
def test_a_separate_value_net_where_there_is_none(args, message):
    found = problems(parse_args(["--value-net", "separate", *args]), n_ranks=2)
    assert sum(message in p for p in found) == 1, found


def test_a_separate_value_net_fits_vector_observations_only():
    assert problems(parse_args(["--value-net", "separate", "--env-id", "Pendulum-v1"]), 2) == []
    pytest.importorskip("ale_py")
    found = problems(parse_args(["--value-net", "separate", "--env-id", "ALE/Pong-v5"]), 2)
    assert sum("--value-net separate is implemented for MLP trunks" in p for p in found) == 1, found
