"""Configuration checks for --pipeline-stages > 1 that need no MPI world (and no torch).

``mpirl.config.validate`` adds these problems to its list, so bad input is reported once, before
training. (Checks that need the number of ranks, e.g. ranks divisible by stages and stages no
more than layers, live with the other layout checks in ``mpirl.train.check_layout``.)
"""
from __future__ import annotations

from mpirl.pipeline.partition import parse_explicit


def pipelined_minibatch_rows(cfg) -> int:
    """Rows of one pipelined PPO minibatch before the reset steps of autoreset are dropped: the
    rollouts of all the pipeline's ranks, cut into --num-minibatches."""
    return cfg.num_steps * cfg.num_envs * cfg.pipeline_stages // max(cfg.num_minibatches, 1)


def config_problems(cfg) -> list[str]:
    problems = []
    if cfg.tasks:
        problems.append("--tasks cannot be combined with --pipeline-stages > 1")
    rows = pipelined_minibatch_rows(cfg)
    if cfg.micro_batches >= 1 and (cfg.micro_batches > rows or rows % cfg.micro_batches):
        problems.append(f"--micro-batches {cfg.micro_batches} must divide the pipelined minibatch "
                        f"of {rows} rows (--num-steps x --num-envs x --pipeline-stages / "
                        "--num-minibatches)")
    if cfg.partition is not None:
        try:
            parse_explicit(cfg.partition, len(cfg.hidden_sizes) + 1, cfg.pipeline_stages)
        except ValueError as exc:
            problems.append(f"{exc} (the actor-critic has one per --hidden-sizes width, plus "
                            "its head)")
    return problems
