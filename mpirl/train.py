"""``mpirun -n N python -m mpirl.train [options]``: the loop that wires the parts together.

    configure   rank 0 parses and validates everything (options, env, run dir) and broadcasts
                the verdict: bad input is reported once and every rank exits 2 before training
    world       threads capped to this rank's share of the cores; any exception aborts the job
    run         run dir, logs, checkpoints, stop signals (mpirl.run)
    algorithm   mpirl.algos.<algo>.train(cfg, world, run) -> summary
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time

import yaml

# Set before torch loads MKL, its BLAS on x86: on AVX-512 CPUs MKL may round a matrix product
# differently with the memory alignment of its operands, and a resumed run (whose allocations
# differ) drifted from an uninterrupted one in the last bits, for one stopping update in three.
# MKL's strict conditional numerical reproducibility makes products independent of alignment.
# A value the user sets wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from mpirl.cli import decide_on_root  # noqa: E402
from mpirl.config import Config, default_run_dir, parse_args, to_yaml  # noqa: E402
from mpirl.errors import ConfigError  # noqa: E402
from mpirl.slurm import check_world_size  # noqa: E402
from mpirl.comm.world import World, install_abort_on_error  # noqa: E402
from mpirl.envs.make import check_env, default_target  # noqa: E402

# Config fields that decide what a checkpoint holds: a resumed run must agree on all of them.
# (Not the pipeline layout: checkpoints always hold the whole model, whatever the stages.)
MUST_MATCH = ("algo", "env_id", "tasks", "hidden_sizes", "num_envs", "normalize_obs", "dueling")


def check_layout(cfg: Config, n_ranks: int) -> None:
    """Parallel layouts that cannot work with this many ranks."""
    if n_ranks % cfg.pipeline_stages:
        raise ConfigError(f"{n_ranks} ranks cannot form pipelines of --pipeline-stages "
                          f"{cfg.pipeline_stages} (ranks must be a multiple of the stages)")
    if cfg.pipeline_stages > 1 and cfg.algo != "ppo":
        raise ConfigError("--pipeline-stages > 1 is implemented for --algo ppo only")
    if cfg.pipeline_stages > 1 and cfg.pipeline_stages > len(cfg.hidden_sizes) + 1:
        raise ConfigError(f"--pipeline-stages {cfg.pipeline_stages} exceeds the model's "
                          f"{len(cfg.hidden_sizes) + 1} layers (deepen --hidden-sizes)")
    if cfg.sync_mode == "overlap" and cfg.pipeline_stages > 1:
        raise ConfigError("--sync-mode overlap does not support --pipeline-stages > 1")
    from mpirl.taskspec import check_tasks  # --tasks: ranks per task, Discrete action spaces
    check_tasks(cfg, n_ranks)


def prepare_run_dir(cfg: Config, n_ranks: int) -> None:
    """Create (or, with --resume, vet) the run dir. Nothing existing is ever overwritten."""
    path = cfg.run_dir
    saved_cfg = os.path.join(path, "config.yaml")
    if cfg.resume:
        if not os.path.isdir(path):
            raise ConfigError(f"--resume: run dir {path} does not exist")
        if not os.path.isfile(saved_cfg):
            raise ConfigError(f"--resume: {path} is not an mpirl run (no config.yaml)")
        try:
            with open(saved_cfg) as fh:
                saved = yaml.safe_load(fh) or {}
            with open(os.path.join(path, "run.json")) as fh:
                saved["n_ranks"] = json.load(fh).get("n_ranks")
        except (OSError, ValueError, yaml.YAMLError, AttributeError, TypeError) as exc:
            # (json's errors are ValueErrors; Attribute/TypeError: a file that is not a mapping)
            raise ConfigError(f"--resume: cannot read the run's config.yaml and run.json in "
                              f"{path}: {exc}") from None
        now = {**cfg.to_dict(), "n_ranks": n_ranks}
        diff = [f"  {k}: run has {saved.get(k)!r}, now {now[k]!r}"
                for k in MUST_MATCH + ("n_ranks",) if saved.get(k) != now[k]]
        if diff:
            raise ConfigError(f"--resume: {path} was trained with a different setup; "
                              "resuming would mix incompatible state:\n" + "\n".join(diff))
        if not os.path.isdir(os.path.join(path, "checkpoints")) or \
                not any(f.endswith(".pt") for f in os.listdir(os.path.join(path, "checkpoints"))):
            raise ConfigError(f"--resume: {path} has no checkpoint to resume from")
        if not os.access(path, os.W_OK):
            raise ConfigError(f"--resume: run dir {path} is not writable")
        return
    if os.path.isdir(path) and os.listdir(path):
        raise ConfigError(f"run dir {path} already holds a run; choose another --run-dir, "
                          "or add --resume to continue it")
    try:
        os.makedirs(path, exist_ok=True)
        with open(saved_cfg, "w") as fh:
            fh.write(to_yaml(cfg))
        with open(os.path.join(path, "run.json"), "w") as fh:
            json.dump({"n_ranks": n_ranks, "created": time.time(), "argv": sys.argv[1:]}, fh)
    except OSError as exc:
        raise ConfigError(f"cannot create run dir {path}: {exc.strerror or exc}") from None


def configure(world: World, argv: list[str] | None) -> Config:
    """Rank 0 decides; every rank gets the same Config, or exits with rank 0's one message."""

    def decide() -> Config:
        check_world_size(world.size)  # under Slurm: one job of SLURM_NTASKS ranks, not N copies
        cfg = parse_args(argv)
        for env_id in ([cfg.env_id] if not cfg.tasks else
                       [t.split(":")[0] for t in cfg.tasks.split(",")]):
            check_env(env_id, cfg.algo)
        check_layout(cfg, world.size)
        if cfg.run_dir is None:
            cfg.run_dir = default_run_dir(cfg)
        prepare_run_dir(cfg, world.size)
        return cfg

    return decide_on_root(world, decide, "mpirl")


def torch_threads(cfg: Config, world: World) -> int:
    """Intra-op threads for this rank: never more than its share of the cores, and one for small
    models, whose kernels are too short for threads to pay for their synchronisation."""
    if cfg.torch_threads:
        return cfg.torch_threads
    widths = list(cfg.hidden_sizes)
    weights = sum(a * b for a, b in zip(widths, widths[1:]))
    return 1 if weights < 100_000 else world.threads_per_rank()


def main(argv: list[str] | None = None) -> dict:
    world = World()
    install_abort_on_error()
    cfg = configure(world, argv)
    import torch  # after configure: --help and bad input are answered in well under a second
    torch.set_num_threads(torch_threads(cfg, world))

    from mpirl.run import Run
    target = cfg.target_return if cfg.target_return is not None else default_target(cfg.env_id)
    run = Run(cfg, world, target=target, total_steps=cfg.total_timesteps)
    run.log.print(f"mpirl: {cfg.algo} on {cfg.tasks or cfg.env_id}, {world.size} rank(s) x {cfg.num_envs} envs, "
                  f"{torch.get_num_threads()} thread(s)/rank, {cfg.total_timesteps:,} global steps "
                  f"-> {cfg.run_dir}")
    algorithm = importlib.import_module(f"mpirl.algos.{cfg.algo}")
    return algorithm.train(cfg, world, run)


if __name__ == "__main__":
    main()
