"""``[mpirun -n N] python -m mpirl.evaluate RUN_DIR [options]``: watch a trained policy play.

    python -m mpirl.evaluate runs/cartpole                          # best checkpoint, as trained
    mpirun -n 4 python -m mpirl.evaluate runs/cheetah --episodes 100 --checkpoint latest
    python -m mpirl.evaluate runs/cartpole --video videos/         # MP4s of evaluation episodes

The network and the normaliser are rebuilt from the run's config.yaml and a checkpoint alone
(mpirl.trained). The episodes are split over the ranks exactly as the trainer's evaluation splits
them, with the same seeds by default (the run's ``seed + 10000``), so the latest checkpoint
reproduces the trainer's last evaluation. Rank 0 writes ``eval.json`` (each episode's return and
length, their mean and std, the checkpoint and its step, the seeds) and prints one summary line.

``--video DIR`` records every episode this command runs, as MP4, with gymnasium's RecordVideo
(rank r records its own episodes). Only evaluation episodes are ever recorded: training never
renders. MuJoCo renders headless through EGL or OSMesa, whichever works on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from mpirl.numerics import reproducible_blas, torch_threads

reproducible_blas()   # before torch loads: the trainer's evaluations, bit for bit

from mpirl.cli import ArgumentParser, decide_on_root  # noqa: E402
from mpirl import presets  # noqa: E402
from mpirl.comm.collectives import broadcast_state  # noqa: E402
from mpirl.comm.world import World, install_abort_on_error  # noqa: E402
from mpirl.errors import ConfigError, Problems  # noqa: E402

PROG = "python -m mpirl.evaluate"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Evaluate a trained policy: "
                            "[mpirun -n N] python -m mpirl.evaluate RUN_DIR [options]. The "
                            "episodes are split over the ranks.")
    parser.add_argument("run_dir", help="the run's directory (it holds config.yaml and "
                                        "checkpoints/)")
    parser.add_argument("--checkpoint", default="latest", metavar="latest|best|PATH",
                        help="which checkpoint: the newest, the best evaluation's, or a file "
                             "(default latest)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes in all (default: the run's --eval-episodes)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the episodes' base seed (default: the run's seed + 10000, as its "
                             "evaluations)")
    parser.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                        help="act with the policy's mode, or sample (--no-deterministic) "
                             "(default: as the run evaluated, its --eval-deterministic)")
    parser.add_argument("--task", help="multi-task runs: the task to evaluate (default: all)")
    parser.add_argument("--video", metavar="DIR", help="record the episodes as MP4 files here")
    parser.add_argument("--out", help="where eval.json goes (default RUN_DIR/eval.json)")
    return parser


def render_problems(env_id: str) -> list[str]:
    """What stops ``env_id`` from recording a video here, and how to mend it."""
    problems = Problems()
    try:
        import moviepy  # noqa: F401 - RecordVideo's writer, with imageio-ffmpeg's ffmpeg
        import imageio_ffmpeg
        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        problems.append(f"--video needs moviepy and ffmpeg: pip install 'mpirl[video]' (or "
                        f"'mpirl[all]'; make setup installs them) ({exc})")
    modes = _render_modes(env_id)
    if "rgb_array" not in modes:
        problems.append(f"--video: {env_id} cannot render frames (its render modes: "
                        f"{', '.join(modes) or 'none'})")
    return problems


def _render_modes(env_id: str) -> list[str]:
    import gymnasium as gym

    from mpirl.envs.make import env_spec
    try:
        env_spec(env_id)   # (registers the ALE's ids)
        env = gym.make(env_id)
    except Exception:  # noqa: BLE001 - the env's own problem is reported elsewhere
        return []
    try:
        return list(env.metadata.get("render_modes", []))
    finally:
        env.close()


def headless_rendering() -> None:
    """Render without a display: pygame (classic control, Box2D) to no window. What the user
    set wins. (MuJoCo's backend is chosen by :func:`mujoco_gl_backend`.)"""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def mujoco_gl_backend() -> str | None:
    """The first of EGL (a GPU's) and OSMesa (software) that makes a GL context here, each tried
    in a subprocess: MuJoCo reads MUJOCO_GL once, when it is imported."""
    probe = "import mujoco; mujoco.GLContext(16, 16).make_current()"
    for backend in ("egl", "osmesa"):
        try:
            done = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                  timeout=120, env={**os.environ, "MUJOCO_GL": backend,
                                                    "PYOPENGL_PLATFORM": backend})
        except subprocess.TimeoutExpired:
            continue
        if done.returncode == 0:
            return backend
    return None


def parse(argv: list[str] | None):
    """Options, the run's config and its checkpoint (rank 0); ConfigError for bad input."""
    from mpirl.trained import TrainedPolicy, read_checkpoint, read_config
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.run_dir):
        raise ConfigError(f"{args.run_dir} is not a directory")
    cfg = read_config(args.run_dir)
    problems = Problems()
    problems.need(args.episodes is None or args.episodes >= 1,
                  f"--episodes must be >= 1, not {args.episodes}")
    problems.need(args.seed is None or args.seed >= 0, f"--seed must be >= 0, not {args.seed}")
    ids = [t.split(":")[0] for t in cfg.tasks.split(",")] if cfg.tasks else [cfg.env_id]
    problems.need(args.task is None or args.task in ids,
                  f"--task {args.task}: not one of the run's tasks ({', '.join(ids)})")
    gl = os.environ.get("MUJOCO_GL")
    if args.video:
        if gl is None and any(presets.family(env_id) == "mujoco" for env_id in ids):
            gl = mujoco_gl_backend()
            problems.need(gl is not None, "--video: MuJoCo cannot render on this machine: "
                          "install OSMesa (Debian: apt-get install libosmesa6) or a GPU "
                          "driver with EGL, or set MUJOCO_GL")
            if gl:
                os.environ.update(MUJOCO_GL=gl, PYOPENGL_PLATFORM=gl)
        for env_id in ([args.task] if args.task else ids):
            problems.extend(render_problems(env_id))
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          "invalid options:\n  " + "\n  ".join(problems))
    saved, path = read_checkpoint(args.run_dir, args.checkpoint)
    for env_id in ([args.task] if args.task else ids):   # the checkpoint fits the network
        TrainedPolicy(cfg, saved["shared"], 0, path, env_id if cfg.tasks else None)
    return args, cfg, saved, path, gl


def main(argv: list[str] | None = None) -> int:
    headless_rendering()
    world = World()
    install_abort_on_error()
    on_root = {}

    def decide():
        args, cfg, on_root["saved"], path, gl = parse(argv)
        return args, cfg, path, on_root["saved"]["meta"], gl

    args, cfg, path, meta, gl = decide_on_root(world, decide, PROG)
    if gl:   # every rank renders MuJoCo through the backend rank 0 found
        os.environ.update(MUJOCO_GL=gl, PYOPENGL_PLATFORM=gl)
    import torch
    torch.set_num_threads(torch_threads(cfg, world))   # as the trainer: the same products
    state = broadcast_state(world, on_root["saved"]["shared"] if world.is_root else None)
    ids = [t.split(":")[0] for t in cfg.tasks.split(",")] if cfg.tasks else [cfg.env_id]
    episodes = args.episodes or cfg.eval_episodes
    seed = cfg.seed + 10_000 if args.seed is None else args.seed
    if args.deterministic is None:
        args.deterministic = cfg.eval_deterministic
    results = {}
    for env_id in ([args.task] if args.task else ids):
        results[env_id] = evaluate_task(world, cfg, state, meta, path, env_id, episodes, seed,
                                        args.deterministic, args.video)
    if world.is_root:
        report = {"run_dir": os.path.abspath(args.run_dir), "checkpoint": path,
                  "step": meta.get("global_step"), "update": meta.get("update"),
                  "episodes": episodes, "seed": seed, "deterministic": args.deterministic,
                  "ranks": world.size, "video": args.video,
                  **(results[ids[0]] if len(results) == 1 else {"tasks": results})}
        out = args.out or os.path.join(args.run_dir, "eval.json")
        with open(out + ".tmp", "w") as fh:
            json.dump(report, fh, indent=2)
        os.replace(out + ".tmp", out)
        for env_id, r in results.items():
            print(f"eval: {episodes} episodes of {env_id} from {os.path.basename(path)} (step "
                  f"{meta.get('global_step', 0):,}): return {r['mean']:.2f} +- {r['std']:.2f}, "
                  f"length {np.mean(r['lengths']):.1f} -> {out}", flush=True)
    return 0


def evaluate_task(world: World, cfg, state: dict, meta: dict, path: str, env_id: str,
                  episodes: int, seed: int, deterministic: bool, video: str | None) -> dict:
    """One task's episodes over the ranks: each episode's return and length, and the seeds."""
    import torch

    from mpirl.envs.atari import Preprocessing
    from mpirl.envs.evaluate import Evaluator
    from mpirl.trained import TrainedPolicy
    policy = TrainedPolicy(cfg, state, int(meta.get("global_step", 0)), path,
                           env_id if cfg.tasks else None)
    generator = torch.Generator().manual_seed(world.rank_seed(seed, 3))
    act = (lambda x: policy.act_on(x, deterministic, generator))
    evaluator = Evaluator(world, env_id, episodes, seed, mode=cfg.vector_mode,
                          video=video, preprocessing=Preprocessing.of(cfg))
    try:
        # the trainer's own reduction, so that the mean is its evaluation's bit for bit (np.mean
        # over the gathered returns adds them in another order)
        mean = evaluator.run_across_ranks(act, policy.observe)
        returns, lengths = evaluator.gather_episodes()
        seeds = evaluator.seeds()
    finally:
        evaluator.close()
    return {"env_id": env_id, "returns": returns, "lengths": lengths,
            "mean": mean, "std": float(np.std(returns)),
            "seeds": seeds}


if __name__ == "__main__":
    sys.exit(main())
