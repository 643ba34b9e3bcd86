"""Bench section "atari": PPO from pixels (issue #18), the atari preset on Breakout.

* **Against Stable-Baselines3**, steps/s with learning, same machine, same run, back to back:
  mpirl's trainer (``python -m mpirl.train --env-id ALE/Breakout-v5 --preset atari``) against
  SB3's ``PPO("CnnPolicy")`` on ``make_atari_env("BreakoutNoFrameskip-v4", n_envs=8)`` +
  ``VecFrameStack(4)`` with the preset's hyperparameters (8 envs x 128 steps, minibatches of 256,
  4 epochs, learning rate 2.5e-4 annealed, clip 0.1 with value clipping, entropy 0.01, value
  coefficient 0.5, gradient norm 0.5). Two pairings: mpirl at 1 rank with 1 thread against SB3
  with 1 thread, and mpirl at 2 ranks (the same global rollout, 4 envs per rank, a thread per
  rank's share of the cores) against SB3 with torch's default threads on the whole machine.
  Steady state: the steps/s of a fixed number of PPO iterations after a warm-up iteration, from
  the trainer's metrics.jsonl (mpirl) and a callback's clock at each rollout start (SB3), so
  start-up, the warm-up iteration and the final evaluation are left out. Target: 1.5x in both.
* **The learning cost against the raw kernels**, one thread: mpirl's own ``learn`` (4 epochs of
  4 minibatches of 256: gather the rows, forward, PPO loss, backward into the flat gradient,
  global-norm clip, FlatAdam step) per minibatch, next to a bare forward+backward of the same
  network on the same uint8 minibatch. Target: within 1.3x.
* **Kernel levers**, one thread: forward+backward of the Nature CNN at batch 256 in float32, with
  channels-last memory, under bfloat16 autocast, both, and compiled with ``torch.compile`` (the
  full run only; skipped with the reason if it fails), each with its gradient's relative error
  against float32's. The trainer takes channels-last always and bfloat16 where ``--autocast``
  says (auto: a CPU with AVX512-BF16 or AMX); the pairings above run it both ways.
* **DQN's replay memory for pixels**: bytes per transition of the frame-once memory at 1e6
  transitions (target at most 1.1 x 84 x 84) and the time to draw a batch of 32 and rebuild its
  stacks (target under 1 ms).

The kernel parts run in a subprocess (``python -m mpirl.bench.atari kernels``) with one thread
and the trainer's BLAS settings. ``--quick``: one measured iteration, fewer repetitions, no
compile: a smoke run.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

from mpirl.bench.sb3 import run_sb3
from mpirl.device import computes_bf16_natively, uses_bf16
from mpirl.launch import run as launch_run
from mpirl.launch import train

ENV_ID = "ALE/Breakout-v5"                 # mpirl: ale-py's C++ vector env, the standard wrappers
SB3_ENV_ID = "BreakoutNoFrameskip-v4"      # SB3: its AtariWrapper on the frame-skip-free ROM
ITERATION = 8 * 128                        # the preset's rollout: global steps per PPO iteration
TARGET_SPEEDUP = 1.5                       # mpirl's steps/s against SB3's, in both pairings
TARGET_UPDATE = 1.3                        # a minibatch update against a bare forward+backward
MINIBATCH = 256
REPLAY_CAPACITY = 1_000_000                # the frame-once memory measured: 1e6 transitions


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# -- part 1: mpirl against SB3 ----------------------------------------------------------------
def _mpirl(ranks: int, threads: int, iterations: int, tmp: str, autocast: str = "auto") -> dict:
    """The trainer with the atari preset for 1 + ``iterations`` updates; steady-state steps/s
    over the updates after the first, from metrics.jsonl's clock (taken before the final
    evaluation and checkpoint)."""
    run_dir = os.path.join(tmp, f"mpirl_{ranks}_{autocast}")
    t0 = time.perf_counter()
    train(ranks, ["--env-id", ENV_ID, "--preset", "atari", "--seed", "0",
                  "--total-timesteps", str((1 + iterations) * ITERATION),
                  "--torch-threads", str(threads), "--eval-interval", str(10 ** 9),
                  "--eval-episodes", str(ranks), "--log-interval", str(10 ** 9),
                  "--autocast", autocast, "--no-tensorboard", "--run-dir", run_dir],
          timeout=900, env={"OMP_NUM_THREADS": str(threads)}).check()
    wall = time.perf_counter() - t0
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        clock = {m["update"]: m["time_s"] for m in map(json.loads, fh)}
    steady = clock[1 + iterations] - clock[1]
    return {"ranks": ranks, "threads_per_rank": threads, "iterations": iterations,
            "autocast": autocast,
            "sps": iterations * ITERATION / steady, "warmup_s": clock[1],
            "steady_s": steady, "process_wall_s": wall}


def _sb3(threads: int | None, iterations: int) -> dict | None:
    """SB3's PPO with the preset's settings for 1 + ``iterations`` iterations, ``threads`` torch
    threads (None: its default); steady-state steps/s after the first iteration. None without
    SB3."""
    code = f"""
import json, time
t0 = time.perf_counter()
import torch
{"" if threads is None else f"torch.set_num_threads({threads})"}
import ale_py, gymnasium as gym
gym.register_envs(ale_py)
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

class Clock(BaseCallback):
    def __init__(self):
        super().__init__()
        self.starts, self.end = [], None
    def _on_rollout_start(self):
        self.starts.append(time.perf_counter())
    def _on_step(self):
        return True
    def _on_training_end(self):
        self.end = time.perf_counter()

env = VecFrameStack(make_atari_env("{SB3_ENV_ID}", n_envs=8, seed=0), n_stack=4)
model = PPO("CnnPolicy", env, n_steps=128, batch_size={MINIBATCH}, n_epochs=4,
            learning_rate=lambda f: 2.5e-4 * f, gamma=0.99, gae_lambda=0.95, clip_range=0.1,
            clip_range_vf=0.1, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
            normalize_advantage=True, seed=0, device="cpu", verbose=0)
clock = Clock()
t1 = time.perf_counter()
model.learn({(1 + iterations) * ITERATION}, callback=clock)
steady = clock.end - clock.starts[1]
print(json.dumps({{"threads": torch.get_num_threads(), "iterations": len(clock.starts) - 1,
                   "sps": (len(clock.starts) - 1) * {ITERATION} / steady,
                   "warmup_s": clock.starts[1] - clock.starts[0], "steady_s": steady,
                   "startup_s": t1 - t0, "process_wall_s": time.perf_counter() - t0}}))
"""
    return run_sb3(code, timeout=900, threads=threads)


def _pairing(name: str, ranks: int, threads: int, sb3_threads: int | None, iterations: int,
             tmp: str) -> dict:
    mpirl = _mpirl(ranks, threads, iterations, tmp)
    float32 = _mpirl(ranks, threads, iterations, tmp, autocast="off")
    print(f"  {name}: mpirl {mpirl['sps']:.0f} steps/s ({float32['sps']:.0f} with --autocast "
          "off)", flush=True)
    sb3 = _sb3(sb3_threads, iterations)
    ratio = mpirl["sps"] / sb3["sps"] if sb3 else None
    if sb3:
        print(f"  {name}: SB3 {sb3['sps']:.0f} steps/s ({sb3['threads']} threads): "
              f"{ratio:.2f}x", flush=True)
    return {"name": name, "mpirl": mpirl, "mpirl_float32": float32, "sb3": sb3, "ratio": ratio,
            "ratio_float32": float32["sps"] / sb3["sps"] if sb3 else None,
            "met": None if ratio is None else bool(ratio >= TARGET_SPEEDUP)}


# -- parts 2 and 3: the kernels, in a one-thread subprocess ---------------------------------------
def _interleaved(fns: dict, warmup: int, reps: int) -> dict:
    """Median seconds per call of each of ``fns`` (name -> (fn, calls per round)), timed in
    ``reps`` rounds that take every function in turn after ``warmup`` such rounds untimed: a
    drift of the machine (its clock, other work, a cold start) touches them all alike, not the
    first measured."""
    for _ in range(warmup):
        for fn, calls in fns.values():
            for _ in range(calls):
                fn()
    times: dict = {name: [] for name in fns}
    for _ in range(reps):
        for name, (fn, calls) in fns.items():
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def _update_cost(quick: bool) -> dict:
    """mpirl's learn() on an update's batch, per minibatch, against a bare forward+backward."""
    import copy

    import gymnasium as gym
    import numpy as np
    import torch

    from mpirl.algos.ppo import Batch, learn, ppo_gradients
    from mpirl.algos.replica import Replica
    from mpirl.comm.world import World
    from mpirl.config import parse_args
    from mpirl.models.actor_critic import Policy
    from mpirl.models.nature_cnn import NatureCNNActorCritic
    from mpirl.tasks.single import SingleTask

    cfg = parse_args(["--env-id", ENV_ID, "--preset", "atari", "--torch-threads", "1"], 1)
    if quick:
        cfg.update_epochs = 1   # the same minibatch, fewer of them
    world = World()
    torch.manual_seed(0)
    model = NatureCNNActorCritic((4, 84, 84), gym.spaces.Discrete(4),
                                 bf16=uses_bf16(cfg.autocast, "cpu"))   # as the trainer runs it
    bare = copy.deepcopy(model)
    policy = Policy(model.continuous, model.head.log_std)
    replica = Replica(cfg, world, model, SingleTask(cfg, world), adam_eps=1e-5)
    gradients = ppo_gradients(cfg, model, policy, replica)
    g = torch.Generator().manual_seed(0)
    n = cfg.num_envs * cfg.num_steps
    adv = torch.randn(n, generator=g)
    batch = Batch(obs=torch.randint(0, 256, (n, 4, 84, 84), dtype=torch.uint8, generator=g),
                  actions=torch.randint(0, 4, (n,), generator=g).float(),
                  logp=torch.full((n,), -1.386) + 0.05 * torch.randn(n, generator=g),
                  advantages=(adv - adv.mean()) / adv.std(),
                  values=torch.randn(n, generator=g), returns=torch.randn(n, generator=g))
    shuffler = np.random.default_rng(0)
    steps = cfg.update_epochs * cfg.num_minibatches
    rows = np.arange(MINIBATCH)
    x = batch.obs[:MINIBATCH].clone()

    def forward_backward():
        bare(x).sum().backward()

    t = _interleaved({
        "learn": (lambda: learn(cfg, batch, gradients, replica, shuffler, True, 1, world, 0), 1),
        "loss": (lambda: gradients.forward_backward(batch, rows, False), 2),
        "bare": (forward_backward, 2)}, warmup=1, reps=1 if quick else 5)
    learn_s, loss_s, bare_s = t["learn"] / steps, t["loss"], t["bare"]
    return {"name": gradients.name, "minibatch": MINIBATCH, "minibatches_timed": steps,
            "update_ms": 1e3 * learn_s, "loss_forward_backward_ms": 1e3 * loss_s,
            "bare_forward_backward_ms": 1e3 * bare_s, "ratio": learn_s / bare_s,
            "met": bool(learn_s / bare_s <= TARGET_UPDATE)}


def _levers(quick: bool) -> list[dict]:
    """Forward+backward of the Nature CNN at batch 256 under each lever, with the gradient's
    relative error against float32's."""
    import copy

    import gymnasium as gym
    import torch

    from mpirl.models.nature_cnn import NatureCNNActorCritic

    torch.manual_seed(0)
    base = NatureCNNActorCritic((4, 84, 84), gym.spaces.Discrete(4))
    x = torch.randint(0, 256, (MINIBATCH, 4, 84, 84), dtype=torch.uint8)
    warmup, reps = (1, 2) if quick else (2, 7)

    def variant(channels_last: bool, bf16: bool, compiled: bool):
        # the trainer's own switches: the input's layout (ScaleBytes) and the trunk's autocast
        model = copy.deepcopy(base)
        model[0].channels_last, model.bf16 = channels_last, bf16
        fn = torch.compile(model) if compiled else model

        def step():
            model.zero_grad(set_to_none=False)
            fn(x).sum().backward()
        return model, step

    def flat_grad(model):
        return torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    levers = [("float32", False, False, False), ("channels_last", True, False, False),
              ("bf16 autocast", False, True, False), ("channels_last + bf16", True, True, False)]
    # (the trainer: channels_last, with --autocast off; channels_last + bf16, with bf16)
    if not quick:
        levers += [("torch.compile", False, False, True),
                   ("torch.compile + channels_last + bf16", True, True, True)]
    rows, steps = [], {}
    for name, channels_last, bf16, compiled in levers:
        row = {"lever": name, "channels_last": channels_last, "bf16": bf16, "compiled": compiled}
        try:
            model, step = variant(channels_last, bf16, compiled)
            t0 = time.perf_counter()
            step()                                   # (compiles, where it does)
            row["first_call_s"] = time.perf_counter() - t0
            steps[name] = (model, step)
        except Exception as exc:   # noqa: BLE001 - a lever that fails here is reported, not fatal
            row["skipped"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        rows.append(row)
    times = _interleaved({name: (step, 1) for name, (_, step) in steps.items()}, warmup, reps)
    reference = flat_grad(steps["float32"][0])
    for row in rows:
        if row["lever"] in steps:
            row["ms"] = 1e3 * times[row["lever"]]
            row["speedup"] = times["float32"] / times[row["lever"]]
            grad = flat_grad(steps[row["lever"]][0])   # (of the last call: the same params, x)
            row["grad_rel_error"] = float((grad - reference).norm() / reference.norm())
    return rows


def kernels_main(quick: bool) -> None:
    from mpirl.numerics import reproducible_blas
    reproducible_blas()    # the trainer's BLAS settings, before torch loads
    import torch
    torch.set_num_threads(1)
    cpu_flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu_flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        pass
    out = {"threads": torch.get_num_threads(), "torch": torch.__version__,
           "avx512_bf16": "avx512_bf16" in cpu_flags.split(),
           "amx_bf16": "amx_bf16" in cpu_flags.split(),
           "update": _update_cost(quick), "levers": _levers(quick)}
    print(json.dumps(out))


def _kernels(quick: bool) -> dict:
    cmd = [sys.executable, "-m", "mpirl.bench.atari", "kernels"] + (["--quick"] if quick else [])
    res = launch_run(cmd, timeout=900, env={"OMP_NUM_THREADS": "1"}).check()
    # (stdout and stderr come interleaved: the JSON is the last line that is one)
    return json.loads([line for line in res.output.splitlines() if line.startswith("{")][-1])


# -- part 4: DQN's replay memory for pixels --------------------------------------------------------
def _frame_replay(capacity: int, lanes: int = 16, batch: int = 32) -> dict:
    """The frame-once memory (mpirl.replay.frames) of ``capacity`` 4 x 84 x 84 transitions,
    filled through its adder by ``lanes`` envs of random frames whose episodes last about 1,000
    steps: bytes per transition, and the median time to draw a uniform batch of ``batch`` and
    rebuild its stacks (obs and next_obs), and to add one step of every lane."""
    import numpy as np

    from mpirl.replay.frames import FrameAdder, FrameReplay

    shape = (4, 84, 84)
    memory = FrameReplay(capacity, lanes, shape, n=3, gamma=0.99, prioritized=False)
    adder = FrameAdder(lanes, shape)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (lanes, *shape), dtype=np.uint8)
    actions, rewards, acted = np.zeros(lanes, np.int64), np.ones(lanes, np.float32), \
        np.ones(lanes, bool)
    add_s = []
    for step in range(capacity // lanes + 100):
        ended = rng.random(lanes) < 1e-3
        t0 = time.perf_counter()
        memory.add(adder.add(obs, actions, rewards, None, ended, ~acted, acted))
        add_s.append(time.perf_counter() - t0)
        obs = np.roll(obs, -1, axis=1)            # the next stack: shifted by one frame
        obs[:, -1] = rng.integers(0, 256, (84, 84), dtype=np.uint8)
    sample_s = []
    for _ in range(500):
        t0 = time.perf_counter()
        slots, _ = memory.sample_indices(batch, rng)
        memory.transitions(slots)
        sample_s.append(time.perf_counter() - t0)
    per_transition = memory.nbytes / memory.capacity
    sample_ms = 1e3 * statistics.median(sample_s)
    return {"capacity": memory.capacity, "lanes": lanes, "batch": batch,
            "transitions": len(memory), "bytes_per_transition": per_transition,
            "frame_bytes": 84 * 84, "naive_bytes_per_transition": 2 * int(np.prod(shape)),
            "sample_ms": sample_ms, "add_step_ms": 1e3 * statistics.median(add_s),
            "met": bool(per_transition <= 1.1 * 84 * 84 and sample_ms < 1.0)}


# -- the section ---------------------------------------------------------------------------------
def run(args) -> dict:
    iterations = 1 if args.quick else 8
    cores = _cores()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None   # other work?
    try:
        import stable_baselines3  # noqa: F401
        have_sb3 = True
    except ImportError:
        have_sb3 = False
    pairings = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, ranks, threads, sb3_threads in (
                ("1 rank, 1 thread vs SB3 1 thread", 1, 1, 1),
                ("2 ranks vs SB3 default threads", 2, max(1, cores // 2), None)):
            if have_sb3:
                pairings.append(_pairing(name, ranks, threads, sb3_threads, iterations, tmp))
            else:
                pairings.append({"name": name, "sb3": None, "ratio": None, "met": None,
                                 "ratio_float32": None,
                                 "mpirl": _mpirl(ranks, threads, iterations, tmp),
                                 "mpirl_float32": _mpirl(ranks, threads, iterations, tmp,
                                                         autocast="off")})
    kernels = _kernels(args.quick)
    replay = _frame_replay(100_000 if args.quick else REPLAY_CAPACITY)
    return {"env_id": ENV_ID, "sb3_env_id": SB3_ENV_ID, "iteration_steps": ITERATION,
            "iterations": iterations, "cores": cores, "load_before": load_before,
            "target_speedup": TARGET_SPEEDUP, "replay": replay,
            "target_update": TARGET_UPDATE, "sb3_installed": have_sb3, "pairings": pairings,
            "update": kernels["update"], "levers": kernels["levers"],
            "kernel_threads": kernels["threads"], "torch": kernels["torch"],
            "avx512_bf16": kernels["avx512_bf16"], "amx_bf16": kernels["amx_bf16"],
            "native_bf16": computes_bf16_natively("cpu")}


def table(result: dict) -> str:
    it = result["iterations"]
    lines = [f"PPO with the atari preset, steady state: {it} iteration(s) of "
             f"{result['iteration_steps']:,} global steps (8 envs x 128) after a warm-up "
             f"iteration, start-up and evaluation left out. mpirl: `{result['env_id']}` (ale-py's "
             f"C++ vector env); SB3 {'' if result['sb3_installed'] else '(not installed) '}"
             f"`PPO(\"CnnPolicy\")` on `make_atari_env(\"{result['sb3_env_id']}\", n_envs=8)` + "
             "`VecFrameStack(4)`, the same hyperparameters and network; the pairs run back to "
             "back" + ("" if result.get("load_before") is None else
                       f" (1-minute load average before the section: "
                       f"{result['load_before']:.2f} on {result['cores']} cores)") + ".", "",
             "mpirl runs as it does by default (`--autocast auto`: the CNN's trunk in bfloat16 "
             f"on this CPU: {'yes' if result['native_bf16'] else 'no'}) and with "
             "`--autocast off` (float32 throughout).", "",
             "| pairing | mpirl steps/s | mpirl, --autocast off | mpirl ranks x threads | "
             "SB3 steps/s | SB3 threads | mpirl / SB3 | (--autocast off) | target 1.5x |",
             "|---|---:|---:|---|---:|---:|---:|---:|---|"]

    def ratio(value):
        return "—" if value is None else format(value, ".2f") + "x"
    for p in result["pairings"]:
        m, s = p["mpirl"], p["sb3"]
        lines.append(
            f"| {p['name']} | {m['sps']:,.0f} | {p['mpirl_float32']['sps']:,.0f} | "
            f"{m['ranks']} x {m['threads_per_rank']} | "
            f"{'—' if s is None else format(s['sps'], ',.0f')} | "
            f"{'—' if s is None else s['threads']} | {ratio(p['ratio'])} | "
            f"{ratio(p['ratio_float32'])} | "
            f"{'—' if p['met'] is None else ('met' if p['met'] else 'NOT met')} |")
    if not result["sb3_installed"]:
        lines += ["", "SB3 is not installed (`pip install 'mpirl[bench]'`): no comparison."]
    u = result["update"]
    lines += ["", f"The learning cost, one thread, Nature CNN, minibatch of {u['minibatch']} "
                  f"uint8 observations (PPO gradients: {u['name']}):", "",
              "| what | ms |", "|---|---:|",
              f"| one PPO minibatch update: mpirl's `learn` (rows gathered, forward, loss, "
              f"backward, clip, Adam), mean over its {u['minibatches_timed']} minibatches | "
              f"{u['update_ms']:.1f} |",
              f"| of which forward + PPO loss + backward | {u['loss_forward_backward_ms']:.1f} |",
              f"| bare forward + backward, same network, same batch | "
              f"{u['bare_forward_backward_ms']:.1f} |",
              f"| ratio update / bare | {u['ratio']:.2f}x (target within "
              f"{result['target_update']}x: {'met' if u['met'] else 'NOT met'}) |"]
    bf16 = ("avx512_bf16" if result["avx512_bf16"] else "no avx512_bf16") + \
           (", amx_bf16" if result["amx_bf16"] else "")
    lines += ["", f"Kernel levers, forward + backward of the Nature CNN at batch {MINIBATCH}, "
                  f"one thread (torch {result['torch']}, CPU with {bf16}); the trainer lays its "
                  "inputs out channels-last always and runs the trunk in bfloat16 with "
                  "`--autocast bf16` (or auto, on such a CPU); it does not compile:", "",
              "| lever | ms | speedup | gradient rel. error vs float32 | first call (s) |",
              "|---|---:|---:|---:|---:|"]
    for row in result["levers"]:
        if "ms" in row:
            lines.append(f"| {row['lever']} | {row['ms']:.1f} | {row['speedup']:.2f}x | "
                         f"{row['grad_rel_error']:.1e} | {row['first_call_s']:.1f} |")
        else:
            lines.append(f"| {row['lever']} | skipped: {row['skipped']} | — | — | — |")
    r = result["replay"]
    lines += ["", f"DQN's replay memory for pixels (mpirl.replay.frames), {r['capacity']:,} "
                  f"transitions of 4 x 84 x 84 over {r['lanes']} envs, filled through its adder "
                  "(episodes of about 1,000 steps), one process:", "",
              "| what | figure | target |", "|---|---:|---|",
              f"| bytes per transition (sum-tree included) | {r['bytes_per_transition']:,.0f} "
              f"({r['bytes_per_transition'] / r['frame_bytes']:.3f} x 84 x 84; whole stacks of "
              f"obs and next_obs: {r['naive_bytes_per_transition']:,}) | at most 1.1 x 84 x 84 |",
              f"| draw a batch of {r['batch']} and rebuild its stacks (ms, median) | "
              f"{r['sample_ms']:.3f} | under 1 ms |",
              f"| add one step of all {r['lanes']} envs (ms, median) | {r['add_step_ms']:.3f} | |",
              "", f"Replay targets: {'met' if r['met'] else 'NOT met'}."]
    if any(row["compiled"] for row in result["levers"]):
        lines += ["", "First call: the compile, where there is one; torch.compile keeps its "
                      "kernels in an on-disk cache, so a machine's very first compile takes "
                      "longer (about 20 s here)."]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "kernels":
        kernels_main(quick="--quick" in sys.argv[2:])
    else:
        sys.exit("usage: python -m mpirl.bench.atari kernels [--quick] "
                 "(the section itself: python -m mpirl.bench atari)")
