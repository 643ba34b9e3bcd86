"""Nothing lost, nothing hangs: injected failures, preemption signals and exact resume."""
import signal

import pytest

from mpirl.checkpoint import Checkpoints
from tests.e2e.conftest import final_params, read_metrics, read_summary, signal_when_training
from tests.launch import train

# kind -> (rank that fails, what the job's output must say). Rank -1 = the last rank.
FAILURES = {
    "raise": (-1, "failed: InjectedFault: injected exception at update 5"),
    "interrupt": (-1, "interrupted"),
    "env": (-1, "failed: InjectedFault: injected environment failure"),
    "nan": (-1, "failed: FloatingPointError: non-finite loss"),
    "kill": (-1, "exited on signal 9"),
    "ckpt": (0, "failed: OSError: [Errno 28] No space left on device"),
    "ckpt-kill": (0, "exited on signal 9"),
}


@pytest.mark.parametrize("nprocs", [2, 4])
@pytest.mark.parametrize("kind", list(FAILURES))
def test_any_failure_on_any_rank_ends_the_job_fast_and_keeps_earlier_checkpoints(
        kind, nprocs, tmp_path, tiny):
    rank, message = FAILURES[kind]
    rank = rank % nprocs
    run_dir = tmp_path / "run"
    # Checkpoints at updates 2 and 4; the fault strikes at update 5 (the ckpt kinds at the
    # write of update 6, the next checkpoint).
    update = 6 if kind.startswith("ckpt") else 5
    res = train(nprocs, [*tiny, "--total-timesteps", "100000", "--run-dir", str(run_dir),
                         "--checkpoint-interval", "2"],
                env={"MPIRL_FAULT": f"{kind}@{rank}:{update}"}, timeout=90)
    assert not res.timed_out, res.output[-3000:]
    assert res.returncode != 0
    assert message in res.output, res.output[-3000:]
    if kind != "kill" and kind != "ckpt-kill":
        assert f"[mpirl rank {rank}]" in res.output
    else:  # SIGKILL leaves no Python to speak: Open MPI names the rank
        assert f"rank {rank}" in res.output
    if kind == "interrupt":   # Ctrl-C is not a crash: one line, no traceback
        assert "Traceback" not in res.output, res.output[-3000:]
    assert res.seconds < 30   # start-up included: the fault itself is answered within seconds
    state, path = Checkpoints(str(run_dir)).load_latest(warn=pytest.fail)
    assert state["meta"]["update"] == 4 and path.endswith("ckpt_00000004.pt")
    assert not (run_dir / "summary.json").exists()


@pytest.mark.parametrize("nprocs", [2, 4])
def test_a_rank_that_hangs_without_dying_ends_the_job_within_the_hang_timeout(
        nprocs, tmp_path, tiny):
    run_dir = tmp_path / "run"
    res = train(nprocs, [*tiny, "--total-timesteps", "100000", "--run-dir", str(run_dir),
                         "--checkpoint-interval", "2", "--hang-timeout", "3"],
                env={"MPIRL_FAULT": f"hang@{nprocs - 1}:5"}, timeout=90)
    assert not res.timed_out and res.returncode != 0, res.output[-3000:]
    assert "failed: no progress for" in res.output and "--hang-timeout 3" in res.output
    assert 'mpirl/faults.py", line' in res.output  # the stuck rank's stack shows the sleep
    assert res.seconds < 40
    state, _ = Checkpoints(str(run_dir)).load_latest(warn=pytest.fail)
    assert state["meta"]["update"] == 4


def test_sigusr1_checkpoints_exits_zero_and_resume_is_bitwise_exact(tmp_path, tiny):
    args = [*tiny, "--total-timesteps", "6144", "--seed", "5", "--checkpoint-interval", "1000"]
    whole = tmp_path / "whole"
    train(2, [*args, "--run-dir", str(whole)], timeout=120).check()

    split = tmp_path / "split"
    stopped = train(2, [*args, "--run-dir", str(split)], timeout=120,
                    on_start=signal_when_training(signal.SIGUSR1, split, 8)).check()
    assert "stopped by signal after" in stopped.output
    assert "--resume" in stopped.output.split("Resume with:")[1]
    assert read_summary(split)["status"] == "preempted"
    stopped_at = read_summary(split)["global_steps"]
    assert 0 < stopped_at < 6144

    resumed = train(2, [*args, "--run-dir", str(split), "--resume"], timeout=120).check()
    assert "resumed with fresh episodes" not in resumed.output
    summary = read_summary(split)
    assert summary["status"] == "completed" and summary["global_steps"] == 6144
    a, b = final_params(whole), final_params(split)
    for key in a:
        assert a[key].equal(b[key]), f"{key} differs after resume"
    steps = [m["global_step"] for m in read_metrics(split)]
    assert steps[-1] == 6144 and stopped_at in steps


def test_sigterm_without_mpirun_also_stops_cleanly(tmp_path, tiny):
    run_dir = tmp_path / "run"
    res = train(0, [*tiny, "--total-timesteps", "10000000", "--run-dir", str(run_dir)],
                timeout=120, on_start=signal_when_training(signal.SIGTERM, run_dir, 5)).check()
    assert "stopped by signal" in res.output
    assert Checkpoints(str(run_dir)).paths()


def test_resume_of_an_env_whose_state_cannot_be_saved_starts_fresh_episodes_and_says_so(
        tmp_path, tiny):
    run_dir = tmp_path / "run"
    args = [*tiny, "--total-timesteps", "1024", "--run-dir", str(run_dir), "--checkpoint-interval",
            "2", "--vector-mode", "async", "--num-envs", "2"]
    train(2, args, env={"MPIRL_FAULT": "raise@1:3"}, timeout=120)
    res = train(2, args + ["--resume"], timeout=120).check()
    assert res.output.count("resumed with fresh episodes") == 1
    assert read_summary(run_dir)["global_steps"] == 1024


def test_resume_falls_back_from_a_corrupted_checkpoint(tmp_path, tiny):
    run_dir = tmp_path / "run"
    args = [*tiny, "--total-timesteps", "2048", "--run-dir", str(run_dir), "--checkpoint-interval", "4"]
    train(2, args, env={"MPIRL_FAULT": "raise@0:14"}, timeout=120)
    newest = Checkpoints(str(run_dir)).paths()[0]
    assert newest.endswith("ckpt_00000012.pt")
    with open(newest, "r+b") as fh:
        fh.truncate(100)
    res = train(2, args + ["--resume"], timeout=120).check()
    assert "ckpt_00000012.pt: checksum mismatch" in res.output
    assert "resuming from" in res.output and "ckpt_00000008.pt" in res.output
    assert read_summary(run_dir)["global_steps"] == 2048
