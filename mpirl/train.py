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

from mpirl.numerics import reproducible_blas, torch_threads, trains_a_cnn  # noqa: E402

reproducible_blas()   # before torch loads: products that repeat bit for bit across a resume

from mpirl.checks import check  # noqa: E402
from mpirl.cli import decide_on_root  # noqa: E402
from mpirl.config import Config, default_run_dir, parse_args, to_yaml  # noqa: E402
from mpirl.device import DeviceChoice, choose_device, gpu_path_covers, uses_bf16  # noqa: E402
from mpirl.errors import ConfigError  # noqa: E402
from mpirl.scoreboard import Scoreboard  # noqa: E402
from mpirl.tasks.spec import parse_targets, parse_tasks, rank_counts  # noqa: E402
from mpirl.comm.world import World, describe_mpi, install_abort_on_error  # noqa: E402
from mpirl.envs.make import default_target  # noqa: E402

def create_run_dir(cfg: Config, n_ranks: int) -> None:
    """A new run's dir with its config.yaml and run.json (--resume: the run's own, vetted by
    mpirl.checks). Nothing existing is ever overwritten."""
    if cfg.resume:
        return
    try:
        os.makedirs(cfg.run_dir, exist_ok=True)
        with open(os.path.join(cfg.run_dir, "config.yaml"), "w") as fh:
            fh.write(to_yaml(cfg))
        with open(os.path.join(cfg.run_dir, "run.json"), "w") as fh:
            json.dump({"n_ranks": n_ranks, "created": time.time(), "argv": sys.argv[1:]}, fh)
    except OSError as exc:
        raise ConfigError(f"cannot create run dir {cfg.run_dir}: {exc.strerror or exc}") from None


def configure(world: World, argv: list[str] | None) -> Config:
    """Rank 0 decides; every rank gets the same Config, or exits with rank 0's one message."""

    _, ranks_on_node = world.node_local()   # (collective: before rank 0 decides alone)

    def decide() -> Config:
        cfg = parse_args(argv, world.size)
        if cfg.run_dir is None and not cfg.resume:   # (--resume needs the run's dir: a check)
            cfg.run_dir = default_run_dir(cfg)
        # every problem at once: options, envs, layout, tasks, replay memory, run dir
        check(cfg, world.size, ranks_on_node)
        create_run_dir(cfg, world.size)
        return cfg

    return decide_on_root(world, decide, "mpirl")


def make_scoreboard(cfg: Config, n_ranks: int) -> Scoreboard:
    """The run's scoreboard: one task (--env-id, its target --target-return or the env's own
    threshold), or every task of --tasks with its ranks and target (--task-targets or the
    env's)."""
    if not cfg.tasks:
        target = cfg.target_return if cfg.target_return is not None else default_target(cfg.env_id)
        return Scoreboard([cfg.env_id], [target], [n_ranks], stop_on_solve=cfg.stop_on_solve)
    tasks = parse_tasks(cfg.tasks)
    ids = [env_id for env_id, _ in tasks]
    given = parse_targets(cfg.task_targets, ids)
    return Scoreboard(ids, [given.get(i, default_target(i)) for i in ids],
                      rank_counts(n_ranks, [w for _, w in tasks]), per_task_keys=True,
                      park=cfg.park_solved_tasks, stop_on_solve=cfg.stop_on_solve)


def this_ranks_device(cfg: Config, world: World, gpu_count: int) -> DeviceChoice:
    """--device for this rank: the GPU of its node-local rank (--device auto or cuda), a named
    one, or the CPU (collective: every rank asks MPI which ranks share its node)."""
    local_rank, local_size = world.node_local()
    if cfg.device == "auto" and gpu_count and not gpu_path_covers(cfg):
        return DeviceChoice("cpu", f"--algo {cfg.algo} as configured trains on the CPU (the GPU "
                                   "path covers single-task PPO with --sync-mode allreduce)")
    return choose_device(cfg.device, local_rank, local_size, gpu_count)


def main(argv: list[str] | None = None) -> dict:
    world = World()
    install_abort_on_error()
    cfg = configure(world, argv)
    import torch  # after configure: --help and bad input are answered in well under a second
    torch.set_num_threads(torch_threads(cfg, world))
    device = this_ranks_device(cfg, world, torch.cuda.device_count())
    cfg.device = device.device   # this rank's own: auto and cuda resolved
    # bf16 where every rank computes it natively: replicas must do the same arithmetic (and
    # not in pipelines, whose stages run their layers as they are: acting must match them)
    cfg.autocast = "bf16" if all(world.allgather_obj(uses_bf16(cfg.autocast, cfg.device))) \
        and cfg.pipeline_stages == 1 else "off"

    from mpirl.run import Run
    run = Run(cfg, world, make_scoreboard(cfg, world.size), total_steps=cfg.total_timesteps)
    run.log.print(f"mpirl: {cfg.algo} on {cfg.tasks or cfg.env_id} (preset {cfg.preset}), "
                  f"{world.size} rank(s) x {cfg.num_envs} envs, {torch.get_num_threads()} "
                  f"thread(s)/rank, {cfg.total_timesteps:,} global steps -> {cfg.run_dir}")
    run.log.print(describe_mpi())
    run.log.print(f"device: {cfg.device} on rank 0" + (f"; {device.note}" if device.note else "")
                  + (f"; the CNN's bf16 autocast: {cfg.autocast}" if trains_a_cnn(cfg) else ""))
    algorithm = importlib.import_module(f"mpirl.algos.{cfg.algo}")
    return algorithm.train(cfg, world, run)


if __name__ == "__main__":
    main()
