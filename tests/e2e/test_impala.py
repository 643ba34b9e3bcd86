"""IMPALA end to end (--algo impala; issue #19): learners and actors at 2, 3 and 4 ranks (1 and 2
learners), CartPole learned at 3 ranks, a straggling actor that does not hold the others back,
faults on an actor or a learner that end the job naming the rank, SIGUSR1 and --resume, and the
bad layouts refused before training."""
import signal

import pytest

from tests.e2e.conftest import read_metrics, read_summary, signal_when_training
from tests.launch import train

# 4 envs x 16 steps a block, 2 blocks an update: 128 steps per learner update
SMALL = ["--algo", "impala", "--num-envs", "4", "--num-steps", "16", "--blocks-per-update", "2",
         "--eval-episodes", "2", "--eval-interval", "1000", "--no-tensorboard",
         "--log-interval", "1000"]


@pytest.mark.parametrize("nprocs,learners", [(2, 1), (3, 1), (4, 2)])
def test_learners_and_actors_run_to_the_end(nprocs, learners, tmp_path):
    run_dir = tmp_path / "run"
    updates = 20
    total = updates * 128 * learners
    res = train(nprocs, [*SMALL, "--learners", str(learners), "--total-timesteps", str(total),
                         "--run-dir", str(run_dir), "--checkpoint-interval", "5",
                         "--desync-check-interval", "2"], timeout=120).check()
    assert f"IMPALA: {learners} learner(s), {nprocs - learners} actor(s)" in res.output
    assert res.output.count("stopped the actors:") == 1   # said once, by rank 0
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["global_steps"] == total
    assert summary["learners"] == learners and summary["actors"] == nprocs - learners
    assert summary["n_ranks"] == nprocs   # the job's, though only the learners keep the books
    # every block learned from is in the lag histogram, one per block of every update
    assert sum(summary["policy_lag_histogram"]) == updates * 2 * learners
    # each actor's blocks were all received: learned from or discarded at the stop
    received = summary["blocks_from_actor"]
    assert sorted(received) == [str(r) for r in range(learners, nprocs)]
    assert sum(received.values()) == updates * 2 * learners + summary["blocks_discarded"]
    metrics = read_metrics(run_dir)
    assert [m["update"] for m in metrics] == list(range(1, updates + 1))
    for m in metrics:
        assert 0 <= m["policy_lag_mean"] <= m["policy_lag_max"]
        assert 0.0 <= m["learner_utilisation"] <= 1.0
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt_*.pt"))[-1] == \
        f"ckpt_{updates:08d}.pt"


def test_learns_cartpole_at_3_ranks(tmp_path):
    """1 learner, 2 actors, the defaults: an evaluation reaches CartPole's threshold (475)."""
    run_dir = tmp_path / "run"
    train(3, ["--algo", "impala", "--env-id", "CartPole-v1", "--total-timesteps", "400000",
              "--stop-on-solve", "--no-tensorboard", "--run-dir", str(run_dir)],
          timeout=300).check()
    summary = read_summary(run_dir)
    assert summary["solved_at_step"] is not None, summary["eval_return_mean"]


def test_a_slow_actor_does_not_hold_the_others_back(tmp_path):
    """Actor 2 sleeps 20 ms at every step: the learner takes what actor 1 makes meanwhile."""
    run_dir = tmp_path / "run"
    train(3, [*SMALL, "--total-timesteps", str(40 * 128), "--run-dir", str(run_dir)],
          env={"MPIRL_FAULT": "slow@2:20"}, timeout=120).check()
    received = read_summary(run_dir)["blocks_from_actor"]
    assert received["1"] > 3 * received["2"], received


FAILURES = {   # where, on which rank of 3 (0 learns), and what the job's output must say
    "raise@2:3": "[mpirl rank 2] failed: InjectedFault: injected exception at update 3",
    "env@1:3": "[mpirl rank 1] failed: InjectedFault: injected environment failure",
    "kill@2:3": "rank 2",
    "raise@0:3": "[mpirl rank 0] failed: InjectedFault: injected exception at update 3",
    "nan@0:3": "[mpirl rank 0] failed: FloatingPointError: non-finite loss",
}


@pytest.mark.parametrize("fault", list(FAILURES))
def test_a_failing_actor_or_learner_ends_the_job_promptly_naming_the_rank(fault, tmp_path):
    res = train(3, [*SMALL, "--total-timesteps", "1000000", "--run-dir", str(tmp_path / "run")],
                env={"MPIRL_FAULT": fault}, timeout=90)
    assert not res.timed_out and res.returncode != 0, res.output[-3000:]
    assert FAILURES[fault] in res.output, res.output[-3000:]
    assert res.seconds < 30


def test_sigusr1_checkpoints_drains_the_actors_and_resume_completes(tmp_path):
    run_dir = tmp_path / "run"
    total = 300 * 128
    args = [*SMALL, "--total-timesteps", str(total), "--run-dir", str(run_dir),
            "--checkpoint-interval", "1000"]
    stopped = train(3, args, timeout=120, on_start=signal_when_training(signal.SIGUSR1, run_dir, 20))
    stopped.check()
    assert "stopped the actors:" in stopped.output and "discarded" in stopped.output
    assert "stopped by signal after" in stopped.output
    assert "Resume with: mpirun -n 3 python -m mpirl.train" in stopped.output
    summary = read_summary(run_dir)
    assert summary["status"] == "preempted" and 0 < summary["global_steps"] < total
    resumed = train(3, args + ["--resume"], timeout=120).check()
    assert "resuming from" in resumed.output
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["global_steps"] == total


@pytest.mark.parametrize("nprocs,extra,message", [
    (2, ["--learners", "2"], "needs at least 3 ranks"),
    (3, ["--learners", "2"], "do not divide evenly among 2 learners"),
    (3, ["--pipeline-stages", "3"], "--pipeline-stages > 1 is implemented for --algo ppo only"),
])
def test_bad_layouts_are_refused_once_before_training(nprocs, extra, message, tmp_path):
    res = train(nprocs, [*SMALL, *extra, "--run-dir", str(tmp_path / "run")], timeout=60)
    assert res.returncode == 2, res.output[-2000:]
    assert res.output.count(message) == 1, res.output
    assert not (tmp_path / "run").exists()
