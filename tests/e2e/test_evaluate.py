"""See what was learned (#20): ``mpirl.evaluate`` reproduces the trainer's last evaluation,
``mpirl.load`` acts as the trainer's policy without MPI, videos of evaluation episodes, and the
bad input of both."""
import json
import sys

import numpy as np
import pytest

from tests.e2e.conftest import read_metrics
from tests.launch import mpirun, run, train

TINY = ["--num-envs", "4", "--num-steps", "16", "--eval-episodes", "6", "--no-tensorboard",
        "--log-interval", "1000"]


def evaluate(nprocs: int, args: list[str], timeout: float = 180):
    command = ["-m", "mpirl.evaluate", *args]
    return (run([sys.executable, *command], timeout=timeout) if nprocs == 0
            else mpirun(nprocs, command, timeout=timeout))


@pytest.mark.parametrize("nprocs", [1, 2])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_evaluate_reproduces_the_trainers_last_evaluation_exactly(nprocs, env_id, tmp_path):
    run_dir = tmp_path / "run"
    train(nprocs, [*TINY, "--env-id", env_id, "--total-timesteps", "2048", "--eval-interval",
                   "3", "--run-dir", str(run_dir)], timeout=180).check()
    last = read_metrics(run_dir)[-1]["eval_return_mean"]
    res = evaluate(nprocs, [str(run_dir)]).check()
    assert res.output.count("eval: 6 episodes") == 1, res.output    # said once, by rank 0
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["mean"] == last                                    # bit for bit
    assert len(report["returns"]) == len(report["lengths"]) == len(report["seeds"]) == 6
    updates = 2048 // (4 * 16 * nprocs)
    assert report["step"] == 2048 and report["checkpoint"].endswith(f"ckpt_{updates:08d}.pt")
    assert report["seed"] == 10_000 and report["ranks"] == nprocs
    np.testing.assert_allclose(np.mean(report["returns"]), report["mean"])


def test_load_acts_as_the_trainers_policy_in_a_process_without_mpi(tmp_path):
    import torch

    from mpirl.comm import World
    from mpirl.tasks.single import SingleTask
    from mpirl.trained import read_checkpoint, read_config
    run_dir = tmp_path / "run"
    train(2, [*TINY, "--env-id", "Pendulum-v1", "--total-timesteps", "2048", "--run-dir",
              str(run_dir)], timeout=180).check()
    obs = np.random.default_rng(0).normal(0, 1, (5, 3)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    code = (f"import sys, json, numpy as np, mpirl\n"
            f"p = mpirl.load({str(run_dir)!r}, checkpoint='latest')\n"
            f"obs = np.load({str(tmp_path / 'obs.npy')!r})\n"
            f"batch, one = p.act(obs), p.act(obs[0])\n"
            f"print(json.dumps({{'batch': batch.tolist(), 'one': one.tolist(), "
            f"'mpi': 'mpi4py' in sys.modules}}))")
    out = json.loads(run([sys.executable, "-c", code], timeout=120).check()
                     .output.strip().splitlines()[-1])
    assert out["mpi"] is False
    # The trainer's side: its task's envs, normaliser and network, the checkpoint's state.
    cfg = read_config(str(run_dir))
    saved, _ = read_checkpoint(str(run_dir), "latest")
    tasks = SingleTask(cfg, World())
    envs = tasks.make_envs(seed=0)
    envs.normalizer.load_state_dict(saved["shared"]["normalizer"])
    model = tasks.network(envs)
    model.load_state_dict(saved["shared"]["model"])
    def trainer_acts(batch):                                          # ppo.train's evaluation
        with torch.no_grad():
            params, _ = model.split(model(torch.from_numpy(envs.normalizer.normalize(batch))))
        return np.clip(params.numpy(), -2.0, 2.0)                    # Pendulum's bounds

    # (another process, other thread counts: products may round apart in the last bits)
    np.testing.assert_allclose(out["batch"], trainer_acts(obs), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out["one"], trainer_acts(obs[:1])[0], rtol=1e-6, atol=1e-7)


def test_a_video_of_evaluation_episodes_decodes_to_their_frames(tmp_path):
    import imageio
    run_dir, videos = tmp_path / "run", tmp_path / "videos"
    train(0, [*TINY, "--total-timesteps", "4096", "--run-dir", str(run_dir)], timeout=180).check()
    evaluate(2, [str(run_dir), "--episodes", "3", "--video", str(videos),
                 "--checkpoint", "best"]).check()
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["checkpoint"].endswith("best.pt") and report["seeds"] == [10_000, 10_001,
                                                                            10_002]
    files = sorted(videos.glob("*.mp4"))
    assert [f.name for f in files] == [f"CartPole-v1-episode-{k}-episode-0.mp4"
                                       for k in range(3)]
    for path, length in zip(files, report["lengths"]):
        reader = imageio.get_reader(path)
        frames = [frame for frame in reader.iter_data()]
        assert frames[0].shape == (400, 600, 3)                     # CartPole's rgb_array
        # the first observation's frame and one per step (the encoder may drop the last)
        assert length <= len(frames) <= length + 1, (len(frames), length)


@pytest.mark.parametrize("case,message", [
    ("no checkpoints", "no checkpoint in"),
    ("another architecture", "does not fit the network its run's config.yaml describes"),
    ("cannot render", "cannot render frames"),
    ("no ffmpeg", "--video needs moviepy and ffmpeg: pip install 'mpirl[video]'"),
])
def test_bad_evaluate_input_is_one_clear_error(case, message, tmp_path):
    import shutil
    run_dir = tmp_path / "run"
    env_id = "CartPole-v1" if case != "cannot render" else "MountainCar-v0"
    train(0, [*TINY, "--env-id", env_id, "--total-timesteps", "512", "--run-dir", str(run_dir)],
          timeout=120).check()
    args, prefix = [str(run_dir)], []
    if case == "no checkpoints":
        shutil.rmtree(run_dir / "checkpoints")
    elif case == "another architecture":
        config = (run_dir / "config.yaml").read_text().replace("- 64\n- 64", "- 32\n- 32")
        (run_dir / "config.yaml").write_text(config)
    elif case == "cannot render":
        args += ["--video", str(tmp_path / "v")]
        prefix = ["-c", "import gymnasium as gym; gym.spec('MountainCar-v0').kwargs; "
                        "import gymnasium.envs.classic_control.mountain_car as m; "
                        "m.MountainCarEnv.metadata = {'render_modes': []}; import runpy, sys; "
                        "sys.argv[0] = 'mpirl.evaluate'; "
                        "runpy.run_module('mpirl.evaluate', run_name='__main__')"]
    else:
        args += ["--video", str(tmp_path / "v")]
        prefix = ["-c", "import sys, runpy; sys.modules['moviepy'] = None; "
                        "sys.argv[0] = 'mpirl.evaluate'; "
                        "runpy.run_module('mpirl.evaluate', run_name='__main__')"]
    command = prefix + args if prefix else ["-m", "mpirl.evaluate", *args]
    res = mpirun(2, command, timeout=120)
    assert res.returncode == 2, res.output
    assert res.output.count("python -m mpirl.evaluate: error:") == 1, res.output
    assert message in res.output and "Traceback" not in res.output


def test_a_checkpoint_from_another_environment_is_refused(tmp_path):
    cartpole, acrobot = tmp_path / "cartpole", tmp_path / "acrobot"
    for run_dir, env_id in ((cartpole, "CartPole-v1"), (acrobot, "Acrobot-v1")):
        train(0, [*TINY, "--env-id", env_id, "--total-timesteps", "512", "--run-dir",
                  str(run_dir)], timeout=120).check()
    other = sorted((acrobot / "checkpoints").glob("ckpt_*.pt"))[-1]
    res = evaluate(0, [str(cartpole), "--checkpoint", str(other)])
    assert res.returncode == 2 and "Traceback" not in res.output, res.output
    assert "does not fit the network its run's config.yaml describes" in res.output
    assert not (cartpole / "eval.json").exists()
