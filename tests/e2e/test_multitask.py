"""Multi-task runs as users start them: per-task summaries and metrics, exact resume, bad input;
PPO and DQN."""
import pytest
import torch

from tests.e2e.conftest import crash_then_resume, final_params, read_metrics, read_summary
from tests.e2e.test_dqn import TINY_DQN
from tests.launch import train

TASKS = ["--tasks", "CartPole-v1,Acrobot-v1"]


def _args(run_dir, tiny):
    # 4 ranks x 4 envs x 16 steps = 256 global steps per update: 6 updates.
    return [*TASKS, *tiny, "--total-timesteps", "1536", "--eval-interval", "3",
            "--checkpoint-interval", "2", "--run-dir", str(run_dir)]


def test_four_rank_run_writes_per_task_summaries_and_resumes_exactly(tmp_path, tiny):
    whole = tmp_path / "whole"
    res = train(4, _args(whole, tiny), timeout=240).check()
    assert res.output.count("done:") == 1
    assert "CartPole-v1 (2 ranks, target 475.0), Acrobot-v1 (2 ranks, target -100.0)" in res.output

    summary = read_summary(whole)
    assert summary["status"] == "completed" and summary["global_steps"] == 1536
    assert summary["env_id"] == "CartPole-v1,Acrobot-v1"
    tasks = summary["tasks"]
    assert list(tasks) == ["CartPole-v1", "Acrobot-v1"]
    for env_id, target in (("CartPole-v1", 475.0), ("Acrobot-v1", -100.0)):
        assert tasks[env_id]["ranks"] == 2 and tasks[env_id]["target_return"] == target
    # evaluation ran every task: CartPole returns are positive, Acrobot's negative
    assert tasks["CartPole-v1"]["eval_return_mean"] > 0 > tasks["Acrobot-v1"]["eval_return_mean"]
    assert summary["eval_return_mean"] == pytest.approx(
        (tasks["CartPole-v1"]["eval_return_mean"] + tasks["Acrobot-v1"]["eval_return_mean"]) / 2)
    assert tasks["CartPole-v1"]["episode_return_mean"] > 0

    metrics = read_metrics(whole)
    assert [m["update"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    evals = [m for m in metrics if "eval_return_mean" in m]
    assert {3, 6} <= {m["update"] for m in evals}  # every 3 updates, at the end (and early)
    for key in ("CartPole-v1/eval_return_mean", "Acrobot-v1/eval_return_mean",
                "CartPole-v1/solved", "Acrobot-v1/solved"):
        assert key in evals[-1]
    assert any("CartPole-v1/episode_return_mean" in m for m in metrics)
    assert all("episode_return_mean" not in m for m in metrics)  # never pooled across tasks
    for env_id, target in (("CartPole-v1", 475.0), ("Acrobot-v1", -100.0)):
        reached = [m["global_step"] for m in evals if m[f"{env_id}/eval_return_mean"] >= target]
        assert tasks[env_id]["solved_at_step"] == (reached[0] if reached else None)
        assert tasks[env_id]["solved"] == bool(reached) == evals[-1][f"{env_id}/solved"]
    # the run is solved once every task is (tiny runs may be lucky in 2 evaluation episodes)
    every = [t["solved_at_step"] for t in tasks.values()]
    assert summary["solved_at_step"] == (None if None in every else max(every))

    # The checkpoint holds every head, the PopArt statistics and every task's normaliser.
    newest = sorted((whole / "checkpoints").glob("ckpt_*.pt"))[-1]
    state = torch.load(newest, weights_only=True)["shared"]
    model = state["model"]
    assert {"heads.0.value.weight", "heads.1.value.weight", "popart.mean"} <= set(model)
    assert (model["popart.updates"] == 6).all()
    assert model["popart.mean"][1] < 0 < model["popart.mean"][0]  # Acrobot's returns, CartPole's
    assert set(state["normalizer"]) == {"CartPole-v1", "Acrobot-v1"}

    # Crash at update 5 (after the checkpoint at 4), resume: bitwise the uninterrupted run.
    split = tmp_path / "split"
    crashed = train(4, _args(split, tiny), env={"MPIRL_FAULT": "raise@3:5"}, timeout=240)
    assert crashed.returncode != 0 and not (split / "summary.json").exists()
    train(4, _args(split, tiny) + ["--resume"], timeout=240).check()
    resumed, uninterrupted = final_params(split), final_params(whole)
    for key in uninterrupted:
        assert resumed[key].equal(uninterrupted[key]), key
    assert read_summary(split)["tasks"]["Acrobot-v1"]["ranks"] == 2


def test_a_task_at_its_target_is_parked_logged_and_resumed_exactly(tmp_path, tiny):
    """CartPole-v1 with a target any policy reaches (1) is parked at the first evaluation: its
    two ranks stop stepping their envs (no training episodes, no env steps) while Acrobot-v1's
    train on; the logs, summary and checkpoints say so, and a crash on a parked rank resumes
    bit for bit."""
    def args(run_dir):
        return _args(run_dir, tiny) + ["--task-targets", "CartPole-v1:1", "--park-solved-tasks",
                                       "--eval-interval", "2"]

    whole = tmp_path / "whole"
    res = train(4, args(whole), timeout=240).check()
    per_update = 2 * 4 * 16  # each task: 2 ranks x 4 envs x 16 steps
    metrics = read_metrics(whole)
    first_eval = next(m for m in metrics if "eval_return_mean" in m)
    parked_at, parked_step = first_eval["update"], first_eval["global_step"]
    assert parked_at < 6 and first_eval["CartPole-v1/parked"] is True
    assert f"parked CartPole-v1 at step {parked_step:,}" in res.output
    assert "solved tasks parked" in res.output
    for m in metrics:
        sat_out = m["update"] > parked_at
        assert m["CartPole-v1/parked"] is (sat_out or m is first_eval), m
        assert m["CartPole-v1/env_steps"] == min(m["update"], parked_at) * per_update
        assert m["Acrobot-v1/parked"] is False
        assert m["Acrobot-v1/env_steps"] == m["update"] * per_update
        if sat_out:
            assert m["CartPole-v1/episodes"] == 0 and "policy_loss" not in m  # rank 0 is idle

    summary = read_summary(whole)
    assert summary["park_solved_tasks"] is True and summary["global_steps"] == 1536
    cartpole, acrobot = summary["tasks"]["CartPole-v1"], summary["tasks"]["Acrobot-v1"]
    assert cartpole["parked"] is True and cartpole["parked_at_steps"] == [parked_step]
    assert cartpole["resumed_at_steps"] == [] and cartpole["solved_at_step"] == parked_step
    assert cartpole["env_steps"] == parked_at * per_update
    assert acrobot["parked"] is False and acrobot["env_steps"] == 6 * per_update
    state = torch.load(sorted((whole / "checkpoints").glob("ckpt_*.pt"))[-1],
                       weights_only=True)["meta"]["scoreboard"]
    assert state["parked"] == [True, False]

    # Crash on rank 0 (a parked CartPole rank) at update 5, after the checkpoint at 4: resumed,
    # the run parks nothing anew and ends bit for bit as the uninterrupted one.
    split = tmp_path / "split"
    crashed = train(4, args(split), env={"MPIRL_FAULT": "raise@0:5"}, timeout=240)
    assert crashed.returncode != 0 and not (split / "summary.json").exists()
    resumed = train(4, args(split) + ["--resume"], timeout=240).check()
    assert "parked CartPole-v1" not in resumed.output
    final, uninterrupted = final_params(split), final_params(whole)
    for key in uninterrupted:
        assert final[key].equal(uninterrupted[key]), key
    again = read_summary(split)["tasks"]
    for env_id in ("CartPole-v1", "Acrobot-v1"):
        for key in ("parked", "parked_at_steps", "env_steps"):
            assert again[env_id][key] == summary["tasks"][env_id][key], (env_id, key)


# -- DQN: 4 ranks x 4 envs x --train-frequency 4 = 64 global steps per update ----------------------
def _dqn_args(run_dir, *extra):
    return [*TASKS, *TINY_DQN, "--total-timesteps", "2048", "--eval-interval", "8",
            "--checkpoint-interval", "8", "--run-dir", str(run_dir), *extra]


def test_dqn_four_rank_run_writes_per_task_summaries_and_resumes(tmp_path):
    """``--algo dqn --tasks CartPole-v1,Acrobot-v1`` at 4 ranks (allgather: one memory of both
    tasks' transitions): per-task summaries, metrics and evaluations; the checkpoint holds both
    Q heads, the target network, both tasks' statistics and the per-task state; a crash after
    a checkpoint resumes from it (with an empty replay memory, as single-task DQN does)."""
    run_dir = tmp_path / "run"
    resumed = crash_then_resume(4, _dqn_args(run_dir), crash_at_update=20, total=2048,
                                resumed_from="ckpt_00000016.pt")
    assert "CartPole-v1 (2 ranks, target 475.0), Acrobot-v1 (2 ranks, target -100.0)" in \
        resumed.output and "PopArt" not in resumed.output
    assert "replay memory was not saved (--save-replay keeps it); it restarts empty" in \
        resumed.output

    summary = read_summary(run_dir)
    assert summary["algo"] == "dqn" and summary["env_id"] == "CartPole-v1,Acrobot-v1"
    assert summary["replay_sharing"] == "allgather" and summary["gradient_steps"] > 0
    assert summary["popart"] is False and summary["park_solved_tasks"] is False
    tasks = summary["tasks"]
    assert list(tasks) == ["CartPole-v1", "Acrobot-v1"]
    for env_id, target in (("CartPole-v1", 475.0), ("Acrobot-v1", -100.0)):
        assert tasks[env_id]["ranks"] == 2 and tasks[env_id]["target_return"] == target
        assert tasks[env_id]["env_steps"] == 1024   # its 2 ranks' steps, across the resume
    assert tasks["CartPole-v1"]["eval_return_mean"] > 0 > tasks["Acrobot-v1"]["eval_return_mean"]
    assert summary["eval_return_mean"] == pytest.approx(
        (tasks["CartPole-v1"]["eval_return_mean"] + tasks["Acrobot-v1"]["eval_return_mean"]) / 2)

    metrics = read_metrics(run_dir)
    steps = [m["global_step"] for m in metrics]
    # update 17 ran before the crash and again after the resume: its line is there once
    assert steps == [64 * (u + 1) for u in range(2048 // 64)]
    assert all("episode_return_mean" not in m for m in metrics)  # never pooled across tasks
    assert any("CartPole-v1/episode_return_mean" in m for m in metrics)
    evals = [m for m in metrics if "eval_return_mean" in m]
    assert {8, 16, 24, 32} <= {m["update"] for m in evals}
    for key in ("CartPole-v1/eval_return_mean", "Acrobot-v1/eval_return_mean",
                "CartPole-v1/solved", "Acrobot-v1/solved"):
        assert key in evals[-1], key
    assert "td_loss" in metrics[-1] and metrics[-1]["replay_size"] > 0

    checkpoint = torch.load(sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))[-1],
                            weights_only=True)
    state = checkpoint["shared"]
    for net in ("model", "target"):
        assert {"heads.0.q.weight", "heads.1.q.weight", "trunk.0.weight"} <= set(state[net])
        assert state[net]["trunk.0.weight"].shape[1] == 6 + 2   # Acrobot's width + one-hot
    assert set(state["normalizer"]) == {"CartPole-v1", "Acrobot-v1"}
    assert state["normalizer"]["Acrobot-v1"]["count"] > 0
    assert checkpoint["meta"]["scoreboard"]["env_steps"] == [1024, 1024]


@pytest.mark.parametrize("mode,extra", [
    ("sharded", ["--dueling"]), ("none", ["--task-weighting", "ranks", "--no-prioritized"])])
def test_dqn_multitask_runs_in_the_other_sharing_modes(mode, extra, tmp_path):
    run_dir = tmp_path / "run"
    train(4, _dqn_args(run_dir, "--replay-sharing", mode, "--total-timesteps", "1024",
                       "--samples-per-insert", "8", *extra), timeout=180).check()
    summary = read_summary(run_dir)
    assert summary["replay_sharing"] == mode and summary["global_steps"] == 1024
    assert summary["gradient_steps"] > 0 and summary["samples_per_insert"] == pytest.approx(
        8.0, rel=0.25)
    assert all(t["env_steps"] == 512 for t in summary["tasks"].values())
    metrics = read_metrics(run_dir)
    assert "td_loss" in metrics[-1] and "Acrobot-v1/eval_return_mean" in metrics[-1]
    model = final_params(run_dir)
    assert ("heads.1.advantage.weight" in model) == ("--dueling" in extra)


@pytest.mark.parametrize("args,message", [
    (["--tasks", "CartPole-v1,Pendulum-v1"],
     "Pendulum-v1 has a Box action space; --algo dqn needs Discrete"),
    (["--tasks", "CartPole-v1,Acrobot-v1", "--park-solved-tasks"],
     "--park-solved-tasks is implemented for --algo ppo only, not --algo dqn"),
    (["--tasks", "ALE/Pong-v5,ALE/Breakout-v5"],
     "--tasks over Atari games is implemented for --algo ppo in this version, not --algo dqn"),
])
def test_bad_dqn_multitask_input_is_one_clear_error_before_training(args, message, tmp_path):
    run_dir = tmp_path / "run"
    res = train(0, ["--algo", "dqn", *args, "--run-dir", str(run_dir)], timeout=60)
    assert res.returncode == 2, res.output
    assert res.output.count("mpirl: error:") == 1 and message in res.output, res.output
    assert "Traceback" not in res.output and not run_dir.exists()


@pytest.mark.parametrize("tasks,message", [
    ("CartPole-v1,NoSuchEnv-v0", "unknown environment 'NoSuchEnv-v0'"),
    ("CartPole-v1,Pendulum-v1", "Pendulum-v1 has a Box action space; multi-task runs need"),
    ("CartPole-v1:2,Acrobot-v1:two", "malformed weight 'two'"),
    ("CartPole-v1,Acrobot-v1,MountainCar-v0", "3 tasks but only 1 rank(s)"),
    ("ALE/Pong-v5,CartPole-v1", "mixes Atari games with vector-observation environments"),
])
def test_bad_multitask_input_is_one_clear_error_before_training(tasks, message, tmp_path):
    run_dir = tmp_path / "run"
    res = train(0, ["--tasks", tasks, "--run-dir", str(run_dir)], timeout=60)
    assert res.returncode == 2, res.output
    assert res.output.count("mpirl: error:") == 1 and message in res.output, res.output
    assert "Traceback" not in res.output and not run_dir.exists()


def test_more_tasks_than_ranks_under_mpirun_is_reported_once(tmp_path):
    res = train(2, ["--tasks", "CartPole-v1,Acrobot-v1,MountainCar-v0",
                    "--run-dir", str(tmp_path / "run")], timeout=60)
    assert res.returncode == 2 and res.output.count("3 tasks but only 2 rank(s)") == 1, res.output
