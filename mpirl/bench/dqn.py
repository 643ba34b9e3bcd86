"""Bench section "dqn": wall-clock seconds for DQN to solve CartPole-v1, at 1 and 2 ranks, for
each --replay-sharing mode (at 1 rank the three modes are the same run, so it runs once).

"Solved" is the first evaluation (10 greedy episodes) with a mean return >= 475; the time is the
run's own clock up to that evaluation (start-up of Python and MPI excluded, and reported
separately as the job's wall time). Each configuration runs with several seeds, each its own
``mpirun`` job, and the median is reported: DQN's time to solve varies a lot from seed to seed.
Stable-Baselines3's DQN (rl-zoo CartPole settings, same evaluation rule) runs side by side when
it is installed.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# DQN settings that solve CartPole-v1 in a few thousand steps (the learning test uses them too).
# The target network must stay fixed for ~100 gradient steps: copied every 5-20, or Polyak-averaged
# with tau 0.1 every step, Q-values diverge on some seeds (README.md, "Settings that solve CartPole-v1 quickly").
CARTPOLE_ARGS = ["--samples-per-insert", "32", "--batch-size", "64", "--learning-rate", "1e-3",
                 "--gamma", "0.99", "--hidden-sizes", "128,128",
                 "--target-network-frequency", "100"]
SOLVE_ARGS = ["--algo", "dqn", "--env-id", "CartPole-v1", "--stop-on-solve",
              "--eval-interval", "5", "--eval-episodes", "10", "--no-tensorboard",
              "--log-interval", "100000", "--checkpoint-interval", "100000", *CARTPOLE_ARGS]
BUDGET = 50_000          # global steps before a run counts as unsolved
SEEDS, QUICK_SEEDS = (0, 1, 2, 3, 4), (0,)   # times vary several-fold from seed to seed
RUNS = [(1, "allgather"), (2, "allgather"), (2, "sharded"), (2, "none")]
SB3_SETTINGS = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                    learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
                    gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
                    policy_kwargs=dict(net_arch=[256, 256]))


def solve(nprocs: int, mode: str, seed: int, budget: int) -> dict:
    from mpirl.launch import train  # a launcher whose timeout kills the whole job

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        res = train(nprocs, [*SOLVE_ARGS, "--replay-sharing", mode, "--seed", str(seed),
                             "--total-timesteps", str(budget), "--run-dir", str(run_dir)],
                    timeout=600)
        if res.returncode != 0:
            return {"ranks": nprocs, "mode": mode, "seed": seed, "error": res.output[-2000:]}
        summary = json.loads((run_dir / "summary.json").read_text())
    return {"ranks": nprocs, "mode": mode, "seed": seed, "job_wall_s": res.seconds,
            "solved_at_time_s": summary["solved_at_time_s"],
            "solved_at_step": summary["solved_at_step"], "wall_time_s": summary["wall_time_s"],
            "gradient_steps": summary["gradient_steps"], "sps": summary["sps"]}


def sb3_dqn(seed: int) -> dict | None:
    """SB3's DQN on CartPole-v1 with rl-zoo's settings for up to 50 000 steps, evaluated (10
    greedy episodes) every 2 000 steps and stopped at the first mean return >= 475, like ours."""
    try:
        import gymnasium as gym
        from stable_baselines3 import DQN
        from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
        from stable_baselines3.common.monitor import Monitor
    except ImportError:
        return None
    model = DQN("MlpPolicy", "CartPole-v1", seed=seed, verbose=0, **SB3_SETTINGS)
    stop = StopTrainingOnRewardThreshold(reward_threshold=475, verbose=0)
    evaluate = EvalCallback(Monitor(gym.make("CartPole-v1")), eval_freq=2000,
                            n_eval_episodes=10, callback_on_new_best=stop, verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=50_000, callback=evaluate)
    seconds = time.perf_counter() - t0
    solved = evaluate.best_mean_reward >= 475
    return {"seed": seed, "seconds": seconds, "steps": model.num_timesteps, "solved": solved,
            "best_eval_return_mean": float(evaluate.best_mean_reward)}


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run(args) -> dict:
    seeds = QUICK_SEEDS if args.quick else SEEDS
    budget = 5_000 if args.quick else BUDGET
    runs = []
    for seed in seeds:  # configurations interleaved, so that a busy spell hits them all alike
        for nprocs, mode in RUNS:
            load = os.getloadavg()[0]  # other jobs on the machine distort every wall-clock figure
            runs.append({**solve(nprocs, mode, seed, budget), "load_average": load})
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    rows = []
    for nprocs, mode in RUNS:
        mine = [r for r in runs if r["ranks"] == nprocs and r["mode"] == mode and "error" not in r]
        solved = [r for r in mine if r["solved_at_time_s"] is not None]
        rows.append({"ranks": nprocs, "mode": mode if nprocs > 1 else "(one memory)",
                     "solved": f"{len(solved)}/{len(seeds)}",
                     "median_solve_s": _median([r["solved_at_time_s"] for r in solved]),
                     "mean_solve_s": (statistics.fmean([r["solved_at_time_s"] for r in solved])
                                      if solved else None),
                     "median_solve_step": _median([r["solved_at_step"] for r in solved]),
                     "median_sps": _median([r["sps"] for r in mine]),
                     "times_s": [r["solved_at_time_s"] for r in mine]})
    sb3 = None if args.quick else sb3_dqn(seed=0)
    loads = [r["load_average"] for r in runs]
    return {"budget": budget, "seeds": list(seeds), "rows": rows, "runs": runs, "sb3": sb3,
            "load_average": [min(loads), max(loads)]}


def table(result: dict) -> str:
    m = result.get("machine", {})
    lines = [f"DQN time to solve CartPole-v1 (eval mean >= 475), median over seeds "
             f"{result['seeds']}, budget {result['budget']:,} steps "
             f"({m.get('cpu', '?')}, {m.get('cores', '?')} cores, load average "
             f"{result['load_average'][0]:.1f}-{result['load_average'][1]:.1f})", "",
             "| ranks | replay sharing | solved | median seconds | mean seconds | median steps "
             "| steps/s | per seed (s) |",
             "|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        t = "-" if r["median_solve_s"] is None else f"{r['median_solve_s']:.1f}"
        s = "-" if r["median_solve_step"] is None else f"{r['median_solve_step']:,.0f}"
        per = ", ".join("unsolved" if x is None else f"{x:.1f}" for x in r["times_s"])
        mean = "-" if r.get("mean_solve_s") is None else f"{r['mean_solve_s']:.1f}"
        lines.append(f"| {r['ranks']} | {r['mode']} | {r['solved']} | {t} | {mean} | {s} | "
                     f"{r['median_sps']:,.0f} | {per} |")
    sb3 = result.get("sb3")
    lines.append("")
    if sb3:
        verdict = (f"solved in {sb3['seconds']:.1f} s ({sb3['steps']:,} steps)" if sb3["solved"]
                   else f"did not solve in {sb3['steps']:,} steps ({sb3['seconds']:.1f} s; best "
                        f"eval {sb3['best_eval_return_mean']:.1f})")
        lines.append(f"Stable-Baselines3 DQN, rl-zoo CartPole settings, seed {sb3['seed']}, same "
                     f"machine, same evaluation: {verdict}.")
    else:
        lines.append("Stable-Baselines3 is not installed here: no side-by-side run.")
    lines += ["", _verdict(result["rows"], sb3)]
    return "\n".join(lines)


def _verdict(rows: list[dict], sb3: dict | None) -> str:
    """The issue's two targets, judged on the median and, as a check, the mean over seeds."""
    by_mode = {r["mode"]: r for r in rows if r["ranks"] == 2}
    parts = []
    for stat in ("median", "mean"):
        shared = [by_mode[m][f"{stat}_solve_s"] for m in ("allgather", "sharded")
                  if by_mode.get(m, {}).get(f"{stat}_solve_s") is not None]
        alone = by_mode.get("none", {}).get(f"{stat}_solve_s")
        if shared and alone is not None:
            parts.append(f"{stat} {min(shared):.1f} s vs {alone:.1f} s "
                         f"({'met' if min(shared) < alone else 'NOT met'})")
    line = ("Target, 2 ranks: allgather or sharded solves faster than none: "
            + ("; ".join(parts) if parts else "not measured") + ".")
    shared_medians = [by_mode[m]["median_solve_s"] for m in ("allgather", "sharded")
                      if by_mode.get(m, {}).get("median_solve_s") is not None]
    if sb3 and sb3["solved"] and shared_medians:
        best = min(shared_medians)
        line += (f" Under half SB3's time: {best:.1f} s vs {sb3['seconds']:.1f} s "
                 f"({'met' if best < sb3['seconds'] / 2 else 'NOT met'}).")
    return line
