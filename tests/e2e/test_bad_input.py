"""The bad-input catalogue: every entry gives one clear message (printed once, not once per
rank), exit code 2, and leaves any existing run dir untouched. docs/faults.md's table lists the same
entries; a test keeps the two in step."""
import hashlib
import re
from pathlib import Path

import pytest

from tests.launch import ROOT, train

EXISTING = "{existing}"   # replaced by the path of a finished run made once for the module

# (what the user got wrong, command-line options, what the message says)
CATALOGUE = [
    ("unknown environment id", ["--env-id", "NoSuchEnv-v9"], "unknown environment 'NoSuchEnv-v9'"),
    ("a value of the wrong type", ["--num-envs", "two"], "--num-envs: 'two' is not a valid int"),
    ("a zero size", ["--num-envs", "0"], "--num-envs must be >= 1"),
    ("a negative step budget", ["--total-timesteps", "-5"], "--total-timesteps must be >= 1"),
    ("a non-positive learning rate", ["--learning-rate", "0"], "--learning-rate must be > 0"),
    ("a probability out of range", ["--gamma", "1.5"], "--gamma must lie in [0, 1]"),
    ("a negative seed", ["--seed", "-1"], "--seed must be >= 0, not -1"),
    ("more minibatches than rollout rows", ["--num-envs", "2", "--num-steps", "2",
                                            "--num-minibatches", "8"],
     "--num-minibatches (8) must be at most --num-steps x --num-envs (2 x 2 = 4)"),
    ("a replay exponent out of range", ["--algo", "dqn", "--per-alpha", "1.5"],
     "--per-alpha must lie in [0, 1]"),
    ("an unknown choice", ["--vector-mode", "turbo"], "--vector-mode must be one of"),
    ("a GPU where none is visible", ["--device", "cuda"], "--device cuda: no CUDA GPU is visible"),
    ("IMPALA without an actor for each learner", ["--algo", "impala", "--learners", "2"],
     "--algo impala with --learners 2 needs at least 3 ranks"),
    ("an unknown option", ["--learning-rat", "0.1"], "unrecognized arguments: --learning-rat"),
    ("an unreadable config file", ["--config", "/nonexistent/run.yaml"], "cannot read config file"),
    ("a malformed YAML config", ["--config", "{bad_yaml}"], "malformed YAML"),
    ("an unknown key in the YAML config", ["--config", "{unknown_yaml}"], "unknown option(s)"),
    ("an incompatible parallel layout", ["--pipeline-stages", "3"],
     "2 ranks cannot form pipelines of --pipeline-stages 3"),
    ("an algorithm that cannot handle the action space", ["--algo", "dqn", "--env-id", "Pendulum-v1"],
     "Pendulum-v1 has a Box action space; --algo dqn needs Discrete"),
    ("a replay memory smaller than a batch", ["--algo", "dqn", "--buffer-size", "10"],
     "--buffer-size (10) must be at least --batch-size"),
    ("a replay memory larger than the node's memory", ["--algo", "dqn", "--buffer-size",
                                                      "1000000000"],
     "each rank's replay memory of CartPole-v1 needs"),
    ("a multi-task option the algorithm lacks",
     ["--algo", "dqn", "--tasks", "CartPole-v1,Acrobot-v1", "--park-solved-tasks"],
     "--park-solved-tasks is implemented for --algo ppo only"),
    ("tasks that mix games and vectors", ["--tasks", "ALE/Pong-v5,CartPole-v1"],
     "mixes Atari games with vector-observation environments"),
    ("--resume without --run-dir", ["--resume"], "--resume needs --run-dir"),
    ("--resume of a missing run dir", ["--resume", "--run-dir", "{tmp}/nothing-here"],
     "does not exist"),
    ("--resume of a foreign directory", ["--resume", "--run-dir", "{foreign}"],
     "is not an mpirl run (no config.yaml)"),
    ("--resume with a different model shape", ["--resume", "--run-dir", EXISTING,
                                               "--hidden-sizes", "32"],
     "hidden_sizes: run has [64, 64], now [32]"),
    ("--resume with a different rank count", ["--resume", "--run-dir", EXISTING], "n_ranks: run has 1, now 2"),
    ("a run dir that already holds a run", ["--run-dir", EXISTING], "already holds a run"),
    ("a run dir that cannot be written", ["--run-dir", "/proc/mpirl-run"], "cannot create run dir"),
]


def _snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A finished one-rank run that bad commands must leave exactly as it is."""
    run_dir = tmp_path_factory.mktemp("existing") / "run"
    train(0, ["--total-timesteps", "256", "--num-envs", "2", "--num-steps", "16", "--run-dir",
              str(run_dir), "--eval-episodes", "1", "--no-tensorboard"], timeout=120).check()
    return run_dir


@pytest.mark.parametrize("what,argv,message", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input_is_reported_once_with_exit_code_2(what, argv, message, tmp_path, existing):
    (tmp_path / "bad.yaml").write_text("total_timesteps: [1, 2\n")
    (tmp_path / "unknown.yaml").write_text("totl_timesteps: 5\n")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("not a run")
    subst = {"{tmp}": str(tmp_path), "{bad_yaml}": str(tmp_path / "bad.yaml"),
             "{unknown_yaml}": str(tmp_path / "unknown.yaml"), "{foreign}": str(tmp_path / "foreign"),
             EXISTING: str(existing)}
    argv = [re.sub("|".join(map(re.escape, subst)), lambda m: subst[m.group()], a) for a in argv]
    before = _snapshot(existing)
    res = train(2, argv, timeout=60)
    assert not res.timed_out
    assert res.returncode == 2, res.output[-2000:]
    assert res.output.count("mpirl: error:") == 1, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert _snapshot(existing) == before


def test_docs_catalogue_lists_every_entry():
    catalogue = (ROOT / "docs" / "faults.md").read_text()
    missing = [what for what, _, _ in CATALOGUE if f"| {what} |" not in catalogue]
    assert not missing, f"docs/faults.md's bad-input table lacks: {missing}"
