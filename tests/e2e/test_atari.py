"""Atari from pixels end to end (#18): PPO, IMPALA and DQN with their atari presets on
ALE/Pong-v5 at 2 ranks through the ALE's C++ vector env, the Nature CNN, uint8 rollouts and the
frame-once replay memory in its sharing modes; evaluation in whole games with the game's score;
mpirl.load acting on pixels; a game that does not exist refused before training."""

import numpy as np
import pytest

pytest.importorskip("ale_py", reason="the atari extra (make setup installs it)")

from tests.e2e.conftest import (  # noqa: E402
    crash_then_resume,
    final_params,
    read_metrics,
    read_summary,
    resume_matches_straight_run,
)
from tests.launch import train  # noqa: E402


def test_ppo_trains_pong_from_pixels_at_2_ranks(tmp_path):
    run_dir = tmp_path / "run"
    res = train(2, ["--env-id", "ALE/Pong-v5", "--num-envs", "2", "--num-steps", "64",
                    "--total-timesteps", "512", "--eval-episodes", "2", "--no-tensorboard",
                    "--run-dir", str(run_dir)], timeout=240).check()
    assert "(preset atari)" in res.output and "PPO gradients: autograd" in res.output
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["global_steps"] == 512
    # a whole game of Pong: 21 points to one side, a score in [-21, 21]
    ev = summary["eval_return_mean"]
    assert -21 <= ev <= 21 and ev == int(ev)
    import mpirl
    policy = mpirl.load(str(run_dir), "latest")
    assert policy.observation_space.shape == (4, 84, 84)
    action = policy.act(np.zeros((4, 84, 84), np.uint8))
    assert policy.action_space.contains(action)
    config = (run_dir / "config.yaml").read_text()
    assert "sign_rewards: true" in config and "clip_coef: 0.1" in config


def test_an_unknown_game_is_refused_before_training(tmp_path):
    res = train(2, ["--env-id", "ALE/NoSuchGame-v5", "--run-dir", str(tmp_path / "run")],
                timeout=60)
    assert res.returncode == 2 and res.output.count("mpirl: error:") == 1, res.output[-2000:]
    assert "unknown environment 'ALE/NoSuchGame-v5'" in res.output
    assert not (tmp_path / "run").exists()


def test_impala_learns_from_pixel_blocks_at_2_ranks(tmp_path):
    """The actor streams uint8 frame stacks (33 x 2 x 4 x 84 x 84 bytes a block) to the learner,
    whose Nature CNN learns from them; no observation statistics travel with the parameters."""
    run_dir = tmp_path / "run"
    res = train(2, ["--algo", "impala", "--env-id", "ALE/Pong-v5", "--num-envs", "2",
                    "--num-steps", "16", "--total-timesteps", "512", "--eval-episodes", "1",
                    "--no-tensorboard", "--run-dir", str(run_dir)], timeout=240).check()
    assert "IMPALA: 1 learner(s), 1 actor(s)" in res.output
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["global_steps"] == 512
    assert -21 <= summary["eval_return_mean"] <= 21
    assert sum(summary["policy_lag_histogram"]) == 512 // (16 * 2)


def test_dqn_trains_pong_from_pixels_at_2_ranks(tmp_path):
    """The atari preset (rl-zoo's DQN) with the frame-once memory shared by Allgatherv: the
    replicas stay bit-identical (the desync check at the end), evaluation plays whole games with
    epsilon 0.05, a resumed run goes on from fresh episodes (the ALE's state cannot be saved from
    its C++ vector env) with the frames --save-replay kept (not the adder's stacks of the old
    episodes: new ones open) and learns at once, and mpirl.load acts greedily on a frame stack."""
    run_dir = tmp_path / "run"
    argv = ["--algo", "dqn", "--env-id", "ALE/Pong-v5", "--learning-starts", "300",
            "--buffer-size", "2000", "--save-replay", "--eval-episodes", "2", "--no-tensorboard",
            "--run-dir", str(run_dir)]
    res = train(2, argv + ["--total-timesteps", "800"], timeout=240).check()
    assert "(preset atari)" in res.output
    res = train(2, argv + ["--total-timesteps", "1200", "--resume"], timeout=240).check()
    assert "resumed with fresh episodes" in res.output and "replay memory restored" in res.output
    resumed = [m for m in read_metrics(run_dir) if m["global_step"] > 800]
    assert resumed and all(m["learned_this_update"] > 0 for m in resumed)
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["global_steps"] == 1200
    assert summary["replay_sharing"] == "allgather" and summary["gradient_steps"] > 0
    ev = summary["eval_return_mean"]
    assert -21 <= ev <= 21 and ev == int(ev)
    import mpirl
    policy = mpirl.load(str(run_dir), "latest")
    frames = np.random.default_rng(0).integers(0, 256, (3, 4, 84, 84), dtype=np.uint8)
    assert policy.act(frames).shape == (3,)
    assert (policy.act(frames) == policy.act(frames)).all()          # greedy by default


def test_dqn_on_pixels_with_a_sharded_prioritized_memory(tmp_path):
    """Each rank keeps its own frames; a global batch of stacks rebuilt on their shards travels
    to its learners (Alltoallv), n-step returns from the frame memory, double and dueling."""
    run_dir = tmp_path / "run"
    train(2, ["--algo", "dqn", "--env-id", "ALE/Pong-v5", "--num-envs", "2",
              "--total-timesteps", "1200", "--learning-starts", "400", "--buffer-size", "2000",
              "--replay-sharing", "sharded", "--prioritized", "--n-step", "3", "--double-q",
              "--dueling", "--eval-episodes", "1", "--no-tensorboard", "--run-dir",
              str(run_dir)], timeout=240).check()
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["replay_sharing"] == "sharded"
    assert summary["gradient_steps"] > 0


def test_ppo_on_pixels_resumes_bitwise_with_gymnasiums_vector_env(tmp_path):
    """--vector-mode sync: the emulators' states go into the checkpoint, so a run that crashed
    and resumed ends with exactly the parameters of one that did not. (ale-py's C++ vector env
    keeps its emulators to itself: there a resumed run starts fresh episodes and says so.)"""
    def argv(run_dir):
        return ["--env-id", "ALE/Pong-v5", "--vector-mode", "sync", "--num-envs", "2",
                "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1",
                "--total-timesteps", "768", "--checkpoint-interval", "2", "--eval-episodes", "1",
                "--no-tensorboard", "--run-dir", str(run_dir)]
    # 6 updates of 2 x 2 envs x 32 steps; rank 0 fails at the start of update index 5
    *_, resumed = resume_matches_straight_run(2, argv, tmp_path, crash_at_update=5, total=768,
                                              resumed_from="ckpt_00000004.pt")
    assert "fresh episodes" not in resumed.output


def test_dqn_on_pixels_with_saved_frames_resumes_bitwise_with_gymnasiums_vector_env(tmp_path):
    """--save-replay keeps each rank's frame memory (frames, slots, the sum-tree) and its adder's
    last stacks; with --vector-mode sync the emulators come back too, so a run that crashed and
    resumed ends with exactly the parameters of one that did not."""
    def argv(run_dir):
        return ["--algo", "dqn", "--env-id", "ALE/Pong-v5", "--vector-mode", "sync",
                "--num-envs", "2", "--learning-starts", "200", "--buffer-size", "1000",
                "--prioritized", "--n-step", "3", "--total-timesteps", "720",
                "--checkpoint-interval", "12", "--save-replay", "--eval-episodes", "1",
                "--no-tensorboard", "--run-dir", str(run_dir)]
    # 16 global steps an update; learning from update 13; rank 0 fails at update index 26
    *_, resumed = resume_matches_straight_run(2, argv, tmp_path, crash_at_update=26, total=720,
                                              resumed_from="ckpt_00000024.pt")
    assert "replay memory restored" in resumed.output and "fresh episodes" not in resumed.output


@pytest.mark.parametrize("mode", ["overlap", "local-sgd"])
def test_the_cnn_trains_in_the_other_sync_modes(mode, tmp_path):
    """The Nature CNN through the overlapped Allreduce (buckets as backward goes) and local SGD
    (replicas apart, averaged now and then): the replicas agree at the end (the desync check)."""
    run_dir = tmp_path / "run"
    res = train(2, ["--env-id", "ALE/Pong-v5", "--num-envs", "2", "--num-steps", "32",
                    "--total-timesteps", "512", "--sync-mode", mode, "--eval-episodes", "1",
                    "--no-tensorboard", "--run-dir", str(run_dir)], timeout=240).check()
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["global_steps"] == 512
    assert "the CNN's bf16 autocast:" in res.output


def test_preprocessing_is_settable_and_followed_by_evaluation_load_and_video(tmp_path):
    """--frame-stack 2 --screen-size 64 --frame-skip 2: the trainer's network, mpirl.load and
    mpirl.evaluate's recorded games all see 2 x 64 x 64 stacks; the video films the screen."""
    import json
    import sys

    from tests.launch import run
    run_dir, videos = tmp_path / "run", tmp_path / "videos"
    train(0, ["--env-id", "ALE/Breakout-v5", "--num-envs", "2", "--num-steps", "32",
              "--total-timesteps", "128", "--frame-stack", "2", "--screen-size", "64",
              "--frame-skip", "2", "--eval-episodes", "1", "--no-tensorboard", "--run-dir",
              str(run_dir)], timeout=240).check()
    import mpirl
    policy = mpirl.load(str(run_dir), "latest")
    assert policy.observation_space.shape == (2, 64, 64)
    assert policy.model[1][0].in_channels == 2
    run([sys.executable, "-m", "mpirl.evaluate", str(run_dir), "--episodes", "1", "--video",
         str(videos), "--checkpoint", "latest"], timeout=240).check()
    assert len(list(videos.glob("*.mp4"))) == 1
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["episodes"] == 1 and report["mean"] >= 0      # a whole game's score


def test_ppo_on_pixels_in_a_two_stage_pipeline_cut_between_convolutions_and_features(tmp_path):
    """--pipeline-stages 2 --partition 3,2: the convolutions on one rank, the 512 features and
    the head on the other; the run trains, checkpoints the whole network and evaluates."""
    run_dir = tmp_path / "run"
    res = train(2, ["--env-id", "ALE/Pong-v5", "--num-envs", "2", "--num-steps", "32",
                    "--total-timesteps", "256", "--pipeline-stages", "2", "--partition", "3,2",
                    "--micro-batches", "2", "--eval-episodes", "1", "--no-tensorboard",
                    "--run-dir", str(run_dir)], timeout=240).check()
    assert "the CNN's bf16 autocast: off" in res.output   # stages run float32, as acting does
    assert read_summary(run_dir)["status"] == "completed"
    import gymnasium as gym
    from mpirl.models.nature_cnn import NatureCNNActorCritic
    saved = final_params(run_dir)    # both stages' layers, as a 1-stage run saves them
    whole = NatureCNNActorCritic((4, 84, 84), gym.spaces.Discrete(6)).state_dict()
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in whole.items()}


def test_ppo_learns_two_games_at_once_with_one_trunk_and_a_head_per_game(tmp_path):
    """--tasks over Atari games: one rank per game, the atari preset (chosen by the games'
    family), the games' own action sets, every game's score in the summary, a run that crashes
    resumes, and mpirl.load acts in either game."""
    run_dir = tmp_path / "run"
    args = ["--tasks", "ALE/Pong-v5,ALE/Breakout-v5", "--num-envs", "2", "--num-steps", "64",
            "--total-timesteps", "1024", "--eval-episodes", "2", "--eval-interval", "1000",
            "--checkpoint-interval", "1", "--no-tensorboard", "--run-dir", str(run_dir)]
    resumed = crash_then_resume(2, args, crash_at_update=3, total=1024,
                                resumed_from="ckpt_00000003.pt")
    assert "(preset atari)" in resumed.output and "bf16 autocast" in resumed.output
    summary = read_summary(run_dir)
    pong, breakout = (summary["tasks"][game] for game in ("ALE/Pong-v5", "ALE/Breakout-v5"))
    assert -21 <= pong["eval_return_mean"] <= 21 and breakout["eval_return_mean"] >= 0
    assert pong["env_steps"] == breakout["env_steps"] == 512
    import mpirl
    for game, actions in (("ALE/Pong-v5", 6), ("ALE/Breakout-v5", 4)):
        policy = mpirl.load(str(run_dir), "latest", task=game)
        assert policy.observation_space.shape == (4, 84, 84)
        assert policy.action_space.n == actions
        frames = np.random.default_rng(0).integers(0, 256, (64, 4, 84, 84), np.uint8)
        assert all(policy.action_space.contains(policy.act(f, deterministic=False))
                   for f in frames)
