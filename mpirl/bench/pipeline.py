"""Benchmark section "pipeline": a deep MLP trained on 1 rank vs a 2-stage pipeline.

    python -m mpirl.bench pipeline [--quick]

Model: 8 Linear layers of width 1024 (Tanh between), batch 4096, squared-error loss. Measured:

- step time and throughput (rows/s) of the whole model on ONE rank with 1 thread (the same
  threads per rank as each pipeline stage) and with all cores (the fair "one big rank" line);
- a 2-stage pipeline (2 ranks x 1 thread) with 1F1B at several M, and GPipe at one M: step time,
  speed-up over the 1-thread rank, the measured bubble (1 - compute time / step time, averaged
  over stages) next to the theory (P - 1) / (M + P - 1), and bytes sent between stages per step;
- acting with a pipelined model, for the PPO actor-critic: a forward-only pass through the
  stages per environment step vs one Allgatherv of the stage weights per update followed by
  local forwards (what the trainer does).

Each configuration is its own ``mpirun`` job (``python -m mpirl.bench.pipeline --worker ...``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

WIDTH, LAYERS, BATCH = 1024, 8, 4096
QUICK = dict(width=256, batch=512, steps=3)
FULL = dict(width=WIDTH, batch=BATCH, steps=4)
ACT_STEPS_PER_UPDATE = 32  # the PPO default --num-steps


# -- the driver (plain python) -------------------------------------------------------------------
def _launch(ranks: int, threads: int, worker_args: list[str], timeout: float = 900) -> dict:
    from mpirl.launch import mpirun  # the project's one way to start MPI jobs under a timeout
    res = mpirun(ranks, ["-m", "mpirl.bench.pipeline", "--worker", "--threads", str(threads),
                         *worker_args], timeout=timeout, env={"OMP_NUM_THREADS": str(threads)})
    res.check()
    line = [ln for ln in res.output.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def run(args) -> dict:
    size = QUICK if args.quick else FULL
    load_before = os.getloadavg()[0]  # other jobs on the machine distort every wall-clock figure
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    common = ["--width", str(size["width"]), "--batch", str(size["batch"]),
              "--steps", str(size["steps"])]
    rows = []

    def case(label, ranks, threads, schedule="1f1b", micro=1):
        print(f"  {label}", flush=True)
        r = _launch(ranks, threads, common + ["--stages", str(ranks), "--schedule", schedule,
                                              "--micro", str(micro)])
        rows.append({"label": label, "stages": ranks, "threads_per_rank": threads,
                     "schedule": schedule, "micro_batches": micro, **r})

    case("1 rank x 1 thread", 1, 1)
    case(f"1 rank x {cores} threads", 1, cores)
    for m in ((1, 4, 8) if args.quick else (1, 2, 4, 8, 16)):
        case(f"2 stages x 1 thread, 1F1B, M={m}", 2, 1, "1f1b", m)
    case("2 stages x 1 thread, GPipe, M=8", 2, 1, "gpipe", 8)
    base = rows[0]["step_s"]
    for r in rows:
        r["speedup_vs_1_rank_1_thread"] = base / r["step_s"]
    print("  acting: forward-only pipeline vs gathered weights", flush=True)
    acting = _launch(2, 1, ["--acting"])
    return {"model": f"{LAYERS} x Linear({size['width']}), batch {size['batch']}",
            "cores": cores, "load_average": [load_before, os.getloadavg()[0]], "rows": rows,
            "acting": acting}


def table(result: dict) -> str:
    load = result.get("load_average", [float("nan")] * 2)
    lines = [f"Pipeline: {result['model']}, {result['machine']['cpu']} "
             f"({result['cores']} cores; 1-minute load average {load[0]:.1f} before, "
             f"{load[1]:.1f} after)", "",
             "| configuration | step (s) | rows/s | speed-up vs 1 rank x 1 thread | "
             "bubble measured | bubble theory | MiB sent between stages / step |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        bubble = "-" if r["stages"] == 1 else f"{100 * r['bubble']:.1f}%"
        theory = "-" if r["stages"] == 1 else f"{100 * r['bubble_theory']:.1f}%"
        lines.append(f"| {r['label']} | {r['step_s']:.3f} | {r['rows_per_s']:,.0f} | "
                     f"{r['speedup_vs_1_rank_1_thread']:.2f}x | {bubble} | {theory} | "
                     f"{r['bytes_per_step'] / 2**20:.1f} |")
    a = result["acting"]
    lines += ["", f"Acting with the 2-stage PPO actor-critic ({a['model']}), per update of "
                  f"{a['steps_per_update']} env steps x {a['rows']} envs:", "",
              "| strategy | per env step (ms) | per update (ms) |", "|---|---|---|",
              f"| forward-only pass through the stages | {1e3 * a['pipeline_forward_s']:.3f} | "
              f"{1e3 * a['pipeline_per_update_s']:.2f} |",
              f"| gather stage weights once, act locally | {1e3 * a['local_forward_s']:.3f} | "
              f"{1e3 * a['gathered_per_update_s']:.2f} (gather {1e3 * a['gather_s']:.3f}) |"]
    return "\n".join(lines)


# -- the worker (under mpirun) --------------------------------------------------------------------
def _mlp(width: int, in_dim: int | None = None):
    import torch.nn as nn
    layers = []
    for i in range(LAYERS):
        layers += [nn.Linear(in_dim if (i == 0 and in_dim) else width, width), nn.Tanh()]
    return layers[:-1]


def _train_worker(opts) -> dict:
    import torch
    from mpirl.comm import Grid, World
    from mpirl.pipeline.executor import PipelineExecutor
    from mpirl.pipeline.schedule import theoretical_bubble
    from mpirl.comm.collectives import allreduce_sum

    world = World()
    grid = Grid.build(world, opts.stages)
    torch.manual_seed(0)
    executor = PipelineExecutor.from_layers(grid, _mlp(opts.width), (opts.width,),
                                            opts.schedule, opts.micro)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(opts.batch, opts.width, generator=g)
    y = torch.randn(opts.batch, opts.width, generator=g)
    rows = opts.batch // opts.micro

    def loss_fn(out, m):
        return ((out - y[m * rows:(m + 1) * rows]) ** 2).sum() / y.numel()

    steps, bubbles, sent = [], [], []
    for step in range(opts.steps + 1):  # the first step warms up allocations and is not counted
        world.barrier()
        t0 = time.perf_counter()
        executor.train_step(x if executor.stage.is_first else None,
                            loss_fn if executor.stage.is_last else None, opts.batch)
        world.barrier()
        if step:
            steps.append(time.perf_counter() - t0)
            bubbles.append(executor.timing.bubble)
            sent.append(executor.link.bytes_sent)
    step_s = statistics.median(steps)
    bubble = allreduce_sum(world, [statistics.median(bubbles)])[0] / world.size
    bytes_per_step = allreduce_sum(world, [statistics.median(sent)])[0]
    return {"step_s": step_s, "rows_per_s": opts.batch / step_s, "bubble": bubble,
            "bubble_theory": theoretical_bubble(opts.stages, opts.micro),
            "bytes_per_step": bytes_per_step,
            "bytes_per_step_formula": 2 * (opts.stages - 1) * opts.batch * opts.width * 4}


def _acting_worker(opts) -> dict:
    """The CartPole actor-critic over 2 stages: per-step pipeline forward vs gathered weights."""
    import gymnasium as gym
    import torch
    from mpirl.comm import Grid, World
    from mpirl.models.actor_critic import ActorCritic
    from mpirl.pipeline.executor import PipelineExecutor
    from mpirl.pipeline.weights import StageSlice

    world = World()
    grid = Grid.build(world, 2)
    torch.manual_seed(0)
    model = ActorCritic(4, gym.spaces.Discrete(2), (64, 64))
    executor = PipelineExecutor.from_layers(grid, list(model), (4,))
    weights = StageSlice(grid.pipe, list(executor.stage.parameters()), list(model.parameters()))
    rows, repeats = 8, 300
    obs = torch.randn(rows, 4)

    def timed(fn, n):
        fn()
        world.barrier()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        world.barrier()
        return (time.perf_counter() - t0) / n

    pipe_s = timed(lambda: executor.forward(obs if executor.stage.is_first else None, rows,
                                            to_all=True), repeats)
    gather_s = timed(weights.gather_parameters, repeats)
    with torch.no_grad():
        local_s = timed(lambda: model(obs), repeats)
    return {"model": "ActorCritic(4 -> 64 -> 64 -> 2+1)", "rows": rows,
            "steps_per_update": ACT_STEPS_PER_UPDATE, "pipeline_forward_s": pipe_s,
            "pipeline_per_update_s": ACT_STEPS_PER_UPDATE * pipe_s, "gather_s": gather_s,
            "local_forward_s": local_s,
            "gathered_per_update_s": gather_s + ACT_STEPS_PER_UPDATE * local_s}


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--acting", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stages", type=int, default=1)
    parser.add_argument("--schedule", default="1f1b")
    parser.add_argument("--micro", type=int, default=1)
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--steps", type=int, default=FULL["steps"])
    opts = parser.parse_args(argv)
    import torch
    torch.set_num_threads(opts.threads)
    result = _acting_worker(opts) if opts.acting else _train_worker(opts)
    from mpirl.comm import World
    if World().is_root:
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    worker(sys.argv[1:])
