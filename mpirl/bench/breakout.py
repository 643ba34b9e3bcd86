"""Bench section "breakout": PPO learns Breakout from pixels, with and without the kernel levers.

PPO with the atari preset on ``ALE/Breakout-v5`` at 2 ranks for 1M global steps, twice: as it
trains by default (``--autocast auto``: the CNN's trunk in bfloat16 on a CPU that computes it
natively) and with ``--autocast off`` (float32 throughout), the same seed. For each: the training
games' mean score (whole games, unclipped) against global steps and against wall time, plotted
together; the mean score of the games that ended in the run's last 5% of steps; the final
evaluation (10 games, actions sampled as the preset evaluates); steps/s.

Target (issue #18): the mean game score rises from random play (about 1.7) to at least 10 by the
end of the run with the levers, and the run without them learns alike (the levers must leave
learning intact). ``--quick``: 2 x 4,096 steps, a smoke run.
"""
from __future__ import annotations

import json
import os

from mpirl.launch import train
from mpirl.plot import plot

ENV_ID = "ALE/Breakout-v5"
RANKS = 2
STEPS = 1_000_000
RANDOM_PLAY = 1.7            # the mean score of random play (the figure)
TARGET = 10.0
LATE = 0.05                  # "the end of the run": games that ended in its last 5% of steps
VARIANTS = ("auto", "off")   # --autocast


def _train(autocast: str, steps: int, out: str) -> dict:
    run_dir = os.path.join(out, f"breakout-{autocast}")
    train(RANKS, ["--env-id", ENV_ID, "--preset", "atari", "--seed", "1", "--total-timesteps",
                  str(steps), "--autocast", autocast, "--eval-interval", "100",
                  "--eval-episodes", "10", "--no-tensorboard", "--run-dir", run_dir],
          timeout=2 * 3600).check()
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        records = [json.loads(line) for line in fh]
    with open(os.path.join(run_dir, "summary.json")) as fh:
        summary = json.load(fh)
    scored = [r for r in records if r.get("episode_return_mean") is not None]
    late = [r for r in scored if r["global_step"] > (1 - LATE) * steps]
    first = scored[:max(1, len(scored) // 20)]
    return {"autocast": autocast, "run_dir": run_dir, "steps": summary["global_steps"],
            "sps": summary["sps"], "wall_s": summary["wall_time_s"],
            "first_score": _mean(first), "late_score": _mean(late),
            "eval_score": summary["eval_return_mean"]}


def _mean(records: list) -> float | None:
    """The mean score of the games these log records count (each record: the games that ended
    since the one before)."""
    games = sum(r.get("episodes", 1) for r in records)
    if not games:
        return None
    return sum(r["episode_return_mean"] * r.get("episodes", 1) for r in records) / games


def run(args) -> dict:
    steps = 4_096 if args.quick else STEPS
    runs = [_train(autocast, steps, args.out) for autocast in VARIANTS]
    plots = []
    for x in ("steps", "time"):
        out = os.path.join(args.out, f"breakout-{x}.png")
        plot([r["run_dir"] for r in runs], x=x, metric="episode_return_mean",
             group_by=["autocast"], out=out)
        plots.append(out)
    levers = runs[0]
    met = levers["late_score"] is not None and levers["late_score"] >= TARGET
    return {"env_id": ENV_ID, "ranks": RANKS, "steps": steps, "runs": runs, "target": TARGET,
            "random_play": RANDOM_PLAY, "late_fraction": LATE, "met": met, "plots": plots}


def _score(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def table(result: dict) -> str:
    late = int(result["late_fraction"] * result["steps"])
    lines = [f"PPO with the atari preset on `{result['env_id']}`, {result['ranks']} ranks, "
             f"{result['steps']:,} global steps, seed 1; scores are whole games, unclipped.", "",
             "| --autocast | steps/s | wall (s) | first games' score | score of the games in "
             f"the last {late:,} steps | final evaluation (10 games) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(f"| {r['autocast']} | {r['sps']:,.0f} | {r['wall_s']:,.0f} | "
                     f"{_score(r['first_score'])} | {_score(r['late_score'])} | "
                     f"{_score(r['eval_score'])} |")
    lines += ["", f"Target: from random play (about {result['random_play']}) to a mean game "
                  f"score of at least {result['target']:.0f} by the end of the run with the "
                  f"levers (--autocast auto): {'met' if result['met'] else 'NOT met'}."]
    return "\n".join(lines)
