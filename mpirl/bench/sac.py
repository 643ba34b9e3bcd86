"""Bench section "sac": off-policy continuous control, SAC over the shared replay memory (#22).

Three measurements. In each, a run reaches its mark when a deterministic evaluation (10
episodes) scores at least the mark. Both trainers evaluate at the same moments, so the
evaluations cost them alike: whenever the training episodes that just ended score at least the
mark on average (mpirl's ``--target-return MARK``; SB3 through a callback), and in the race also
every RACE_EVAL_EVERY global steps. A run stops at its mark (``--stop-on-solve``), or else at
its budget of global steps:

    race      Stable-Baselines3's SAC (one thread, seed 0) against ``--algo sac`` at 2 ranks,
              then at 1, on HalfCheetah-v5. All three use the settings of mpirl's ``mujoco``
              preset (learning rate 3e-4, batch 256, buffer 1e6, learning_starts 10,000, tau
              0.005, gamma 0.99, one env step and one gradient step per global env step, net
              [256, 256], entropy coefficient tuned from 1), up to RACE_STEPS global steps.
              Measured: steps/s including learning, and the step and wall time of the mark.
              Target: mpirl at 2 ranks reaches the mark at least 1.5x sooner in wall time than
              SB3. Two ranks take the same number of gradient steps per env step as one (the
              global batch is split over them) and explore with different noise scales (Ape-X's
              spread), so the race measures what the ranks buy in time, not in samples.
    sharing   2 ranks with ``--replay-sharing allgather`` (every rank learns from every rank's
              experience) against ``none`` (each rank only from its own), 5 seeds each, on
              Pendulum-v1 (its shipped preset, up to 20,000 steps, mark -200) and HalfCheetah-v5
              (up to 300,000 steps, mark 5,000): seeds reaching the mark, median steps and
              seconds to it, and the last evaluation over seeds.
    long      one HalfCheetah-v5 run at 2 ranks for 1,000,000 steps, its learning curve, and its
              final evaluation beside rl-baselines3-zoo's published SAC figure (HalfCheetah-v3,
              one run: 9535.5 +- 100.5).

The curves drawn are the training episodes' mean return over the last 10 episodes (what both
trainers log while they learn).

Hours of CPU on a laptop-class machine (SAC takes a gradient step per env step), so every run is
kept under ``OUT/runs`` (:mod:`mpirl.bench.kept`): with ``--time-limit MINUTES`` no new run
starts after the limit, the table says what is still to come, and the same command with the same
``--out`` goes on from the kept runs. MPIRL_BENCH_SAC_LONG: unset, the race and both sharing
comparisons run; ``0`` leaves out HalfCheetah's sharing comparison; ``1`` adds the long run.
``--quick``: a smoke run for the tests, on Pendulum-v1 only (no MuJoCo), with tiny budgets,
smaller batches, learning after 1,000 steps in the race and 2 seeds; its figures are not
results.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import warnings

import numpy as np

from mpirl.config import parse_args
from mpirl.bench.kept import KeptRuns, kept_runs, run_preset, train_key
from mpirl.bench.sb3 import run_sb3, sb3_installed
from mpirl.launch import train

RANKS = 2
SEEDS = (0, 1, 2, 3, 4)
EVAL_EPISODES = 10
WINDOW = 10                      # training episodes in the mean that is held to a mark
PRESET = "mujoco"                # the race's settings, on both sides
RACE_ENV, RACE_MARK, RACE_STEPS = "HalfCheetah-v5", 5000.0, 300_000
# --quick: the race on Pendulum (no MuJoCo), learning after 1,000 steps and from batches of 64
# on both sides
QUICK_RACE = {"env_id": "Pendulum-v1", "mark": -400.0, "steps": 1_600, "eval_every": 400,
              "options": ("--learning-starts", "1000", "--batch-size", "64")}
# The race also evaluates on a schedule, every RACE_EVAL_EVERY global steps on both sides: the
# training episodes of mpirl's ranks explore with a spread of noise scales (the noisiest score
# lowest), so they would reach the mark later than its deterministic policy does.
RACE_EVAL_EVERY = 5_000
SPEED = 1.5                      # the race's target: 2 ranks reach the mark this much sooner
# (env, global steps, mark, options beyond the env's preset); HalfCheetah's only in full runs
SHARING = (("Pendulum-v1", 20_000, -200.0, ()), ("HalfCheetah-v5", 300_000, 5000.0, ()))
QUICK_SHARING = (("Pendulum-v1", 800, -200.0,
                  ("--learning-starts", "400", "--batch-size", "64")),)
SHARING_MODES = ("allgather", "none")
LONG_ENV, LONG_STEPS = "HalfCheetah-v5", 1_000_000
ZOO = (9535.5, 100.5)            # rl-baselines3-zoo benchmark.md, SAC HalfCheetah-v3, one run
NEVER = math.inf


def long_setting() -> str | None:
    """MPIRL_BENCH_SAC_LONG: None (unset), "0" or "1"."""
    value = os.environ.get("MPIRL_BENCH_SAC_LONG", "").strip() or None
    if value not in (None, "0", "1"):
        raise ValueError(f"MPIRL_BENCH_SAC_LONG={value!r}: 0, 1 or unset")
    return value


# -- the training return held to a mark -----------------------------------------------------------
class Window:
    """The mean return of the latest WINDOW training episodes, fed per logged update as
    (episodes, their mean): an update that ends several episodes (2 ranks) comes in whole, so
    the window keeps the fewest latest updates that hold WINDOW episodes."""

    def __init__(self):
        self.parts: list = []    # (episodes, mean)

    def add(self, episodes: int, mean: float) -> tuple[float, int]:
        self.parts.append((episodes, mean))
        while len(self.parts) > 1 and sum(n for n, _ in self.parts[1:]) >= WINDOW:
            self.parts.pop(0)
        count = sum(n for n, _ in self.parts)
        return sum(n * m for n, m in self.parts) / count, count


def mpirl_curve(run_dir: str) -> list:
    """[global step, seconds, mean of the last (up to) 10 training episodes, how many] at
    every update of ``run_dir/metrics.jsonl`` that ended an episode."""
    window, curve = Window(), []
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        for line in fh:
            if '"episode_return_mean"' not in line:   # one line per update: parse few
                continue
            m = json.loads(line)
            if m.get("episodes") and m.get("episode_return_mean") is not None:
                mean, count = window.add(int(m["episodes"]), float(m["episode_return_mean"]))
                curve.append([int(m["global_step"]), round(float(m["time_s"]), 2),
                              round(mean, 2), count])
    return curve


def stop_at(mark: float, every_updates: int = 10 ** 9) -> list[str]:
    """mpirl's options for a run that stops at ``mark``: evaluate whenever an update's training
    episodes reach it, and every ``every_updates`` updates (default: never on a schedule); stop
    at the first evaluation that reaches it."""
    return ["--target-return", repr(float(mark)), "--stop-on-solve",
            "--eval-interval", str(every_updates), "--eval-episodes", str(EVAL_EPISODES)]


def mpirl_run(ranks: int, args: list, run_dir: str) -> dict:
    """``--algo sac`` at ``ranks`` ranks with ``args`` (its stop_at included): its figures,
    the mark ([step, seconds] or None) and its training curve."""
    train(ranks, ["--algo", "sac", "--no-tensorboard", "--run-dir", run_dir, *args],
          timeout=12 * 3600).check()
    with open(os.path.join(run_dir, "summary.json")) as fh:
        summary = json.load(fh)
    preset = run_preset(run_dir)
    mark = (None if summary.get("solved_at_step") is None
            else [summary["solved_at_step"], round(summary["solved_at_time_s"], 2)])
    return {"ranks": ranks, "steps": summary["global_steps"],
            "wall_s": round(summary["wall_time_s"], 1), "sps": round(summary["sps"], 1),
            "gradient_steps": summary.get("gradient_steps"), "preset": preset,
            "final_eval": summary["eval_return_mean"], "reached": mark,
            "curve": mpirl_curve(run_dir)}


# -- the race -------------------------------------------------------------------------------------
def sb3_settings(env_id: str, preset: str = PRESET, extra: tuple = ()) -> dict:
    """SB3 SAC's arguments for mpirl's ``--algo sac`` settings with ``preset`` on ``env_id``
    (the configuration the trainer itself resolves), and the settings SB3 has no counterpart
    for, which must be off for the comparison to hold."""
    cfg = parse_args(["--algo", "sac", "--env-id", env_id, "--preset", preset, *extra], 1)
    unlike = {name: value for name, value, sb3 in (
        ("n_step", cfg.n_step, 1), ("prioritized", cfg.prioritized, False),
        ("normalize_obs", cfg.normalize_obs, False), ("max_grad_norm", cfg.max_grad_norm, 0.0),
        ("num_envs", cfg.num_envs, 1), ("policy_frequency", cfg.policy_frequency, 1),
        ("target_network_frequency", cfg.target_network_frequency, 1)) if value != sb3}
    if unlike:
        raise ValueError(f"preset {preset} has settings SB3's SAC cannot take: {unlike}")
    return {"learning_rate": float(cfg.learning_rate), "batch_size": int(cfg.batch_size),
            "buffer_size": int(cfg.buffer_size), "learning_starts": int(cfg.learning_starts),
            "tau": float(cfg.tau), "gamma": float(cfg.gamma),
            "train_freq": int(cfg.train_frequency),
            "gradient_steps": round(cfg.utd * cfg.train_frequency),
            "net_arch": list(cfg.hidden_sizes),
            "ent_coef": "auto" if cfg.autotune else float(cfg.alpha)}


def _sb3_race(env_id: str, steps: int, mark: float, eval_every: int,
              settings: dict) -> dict | None:
    """SB3 SAC on ``env_id`` with ``settings`` (:func:`sb3_settings`), one thread, seed 0,
    evaluated (also every ``eval_every`` steps) and stopped as :func:`stop_at` does mpirl; None
    without SB3."""
    code = f"""
import json, time, gymnasium as gym, numpy as np, torch
torch.set_num_threads(1)
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
s = json.loads({json.dumps(json.dumps(settings))})
eval_env = gym.make("{env_id}")
eval_env.reset(seed=10_000)
class Mark(BaseCallback):
    def __init__(self):
        super().__init__(); self.t0 = time.perf_counter(); self.returns = []; self.curve = []
        self.reached = None; self.evaluations = 0
    def _on_step(self):
        ended = [float(info["episode"]["r"]) for info in self.locals["infos"] if "episode" in info]
        for r in ended:
            self.returns.append(r)
            last = self.returns[-{WINDOW}:]
            self.curve.append([self.num_timesteps, round(time.perf_counter() - self.t0, 2),
                               round(float(np.mean(last)), 2), len(last)])
        # as mpirl: evaluate when the episodes just ended reach the mark, or when due
        if (ended and np.mean(ended) >= {mark!r}) or self.num_timesteps % {eval_every} == 0:
            self.evaluations += 1
            mean, _ = evaluate_policy(self.model, eval_env, n_eval_episodes={EVAL_EPISODES},
                                      deterministic=True)
            if mean >= {mark!r}:
                self.reached = [self.num_timesteps, round(time.perf_counter() - self.t0, 2)]
                self.final_eval = float(mean)
                return False
        return True
env = make_vec_env("{env_id}", n_envs=1, seed=0)
model = SAC("MlpPolicy", env, learning_rate=s["learning_rate"], buffer_size=s["buffer_size"],
            learning_starts=s["learning_starts"], batch_size=s["batch_size"], tau=s["tau"],
            gamma=s["gamma"], train_freq=s["train_freq"], gradient_steps=s["gradient_steps"],
            ent_coef=s["ent_coef"], policy_kwargs=dict(net_arch=s["net_arch"]), seed=0,
            device="cpu")
mark = Mark()
t0 = time.perf_counter()
model.learn({steps}, callback=mark)
wall = time.perf_counter() - t0
print(json.dumps({{"steps": model.num_timesteps, "wall_s": wall,
                   "sps": model.num_timesteps / wall, "reached": mark.reached,
                   "evaluations": mark.evaluations, "curve": mark.curve}}))
"""
    return run_sb3(code, timeout=12 * 3600)


def race_verdict(sb3: dict | None, two: dict | None) -> dict:
    """Wall time to the mark, SB3's over mpirl's at 2 ranks. When SB3 never reached it, its
    whole run bounds the ratio from below (``bound``: the ratio is at least that). Undecided
    (``met`` None) without SB3, or while a run is still to come."""
    if sb3 is None or two is None:
        return {"ratio": None, "bound": False, "met": None}
    if two["reached"] is None:
        return {"ratio": None, "bound": False, "met": False}
    mine = max(two["reached"][1], 1e-9)
    if sb3["reached"] is not None:
        ratio = sb3["reached"][1] / mine
        return {"ratio": ratio, "bound": False, "met": bool(ratio >= SPEED)}
    ratio = sb3["wall_s"] / mine
    return {"ratio": ratio, "bound": True, "met": True if ratio >= SPEED else None}


def _race(quick: bool, kept: KeptRuns) -> dict:
    if quick:
        env_id, mark, steps = QUICK_RACE["env_id"], QUICK_RACE["mark"], QUICK_RACE["steps"]
        extra = QUICK_RACE["options"]
        every = QUICK_RACE["eval_every"]
    else:
        env_id, mark, steps, extra, every = RACE_ENV, RACE_MARK, RACE_STEPS, (), RACE_EVAL_EVERY
    settings = sb3_settings(env_id, PRESET, extra)
    sb3 = kept.run("race-sb3", ["sb3", env_id, steps, mark, every, settings],
                   lambda _: _sb3_race(env_id, steps, mark, every, settings)
                   ) if sb3_installed() else None
    if sb3 is not None:
        print(f"  race: SB3 {sb3['sps']:.0f} steps/s, reached {sb3['reached']}", flush=True)
    mpirl = {}
    for ranks in (2, 1):   # the target's first: with a time limit, 1 rank may be left for later
        updates = every // (settings["train_freq"] * ranks)   # an update: train_freq a rank
        args = ["--env-id", env_id, "--preset", PRESET, "--seed", "0",
                "--total-timesteps", str(steps), *stop_at(mark, updates), *extra]
        entry = kept.run(f"race-mpirl-{ranks}", train_key(ranks, args),
                         lambda run_dir: mpirl_run(ranks, args, run_dir))
        mpirl[ranks] = entry
        if entry is not None:
            print(f"  race: mpirl at {ranks} rank(s) {entry['sps']:.0f} steps/s, reached "
                  f"{entry['reached']}", flush=True)
    names = ["race-sb3", "race-mpirl-2"]
    verdict = race_verdict(sb3, mpirl[2])
    if len(kept.cpus(names)) > 1:   # kept from runs on different machines: no ratio
        verdict = {"ratio": None, "bound": False, "met": None}
    return {"env_id": env_id, "mark": mark, "steps": steps, "eval_every": every,
            "preset": PRESET, "settings": settings, "sb3": sb3,
            "cpus": sorted(kept.cpus(names)),
            "mpirl": [{"ranks": n, **mpirl[n]} if mpirl[n] else {"ranks": n, "pending": True}
                      for n in (1, 2)], **verdict}


# -- sharing against none -------------------------------------------------------------------------
def median_to_mark(runs: list, column: int) -> float | None:
    """The median over every seed of steps (column 0) or seconds (1) to the mark, a seed that
    never reached it counting as never (the upper median for an even count); None: never."""
    values = sorted(r["reached"][column] if r["reached"] else NEVER for r in runs)
    value = statistics.median_high(values)
    return None if value == NEVER else value


def _sharing(env_id: str, budget: int, mark: float, extra: tuple, seeds: tuple,
             kept: KeptRuns) -> dict:
    """Both modes over ``seeds``; a mode's figures are over the seeds run so far (all of them
    unless a time limit left some for later)."""
    modes = []
    for mode in SHARING_MODES:
        runs = []
        for seed in seeds:
            args = ["--env-id", env_id, "--replay-sharing", mode, "--seed", str(seed),
                    "--total-timesteps", str(budget), "--log-interval", str(10 ** 9),
                    *stop_at(mark), *extra]
            run = kept.run(f"sharing-{env_id}-{mode}-{seed}", train_key(RANKS, args),
                           lambda run_dir: mpirl_run(RANKS, args, run_dir))
            if run is not None:
                runs.append({"seed": seed, **run})
        finals = [r["final_eval"] for r in runs]
        modes.append({"mode": mode, "runs": runs, "seeds_to_come": len(seeds) - len(runs),
                      "reached": sum(r["reached"] is not None for r in runs),
                      "median_steps": median_to_mark(runs, 0) if runs else None,
                      "median_wall_s": median_to_mark(runs, 1) if runs else None,
                      "eval_mean": statistics.fmean(finals) if runs else None,
                      "eval_std": statistics.pstdev(finals) if runs else None})
        print(f"  sharing {env_id} {mode}: {modes[-1]['reached']} of {len(runs)} reached "
              f"{mark} ({modes[-1]['seeds_to_come']} seeds to come)", flush=True)
    preset = next((r["preset"] for m in modes for r in m["runs"]),
                  "the env's")   # (named once a run has resolved it)
    return {"env_id": env_id, "budget": budget, "mark": mark, "ranks": RANKS,
            "preset": preset, "options": list(extra), "modes": modes}


# -- the long run ---------------------------------------------------------------------------------
def _long(kept: KeptRuns) -> dict | None:
    args = ["--env-id", LONG_ENV, "--seed", "0", "--total-timesteps", str(LONG_STEPS),
            "--eval-episodes", str(EVAL_EPISODES), "--eval-interval", str(10 ** 9)]
    run = kept.run("long", train_key(RANKS, args),
                   lambda run_dir: mpirl_run(RANKS, args, run_dir))
    if run is None:
        return None
    final = run["final_eval"]
    return {"env_id": LONG_ENV, **run, "zoo": list(ZOO), "target": ZOO[0] - ZOO[1],
            "met": bool(final >= ZOO[0] - ZOO[1]), "stretch": bool(final >= ZOO[0])}


def run(args) -> dict:
    setting = None if args.quick else long_setting()
    seeds = SEEDS[:2] if args.quick else SEEDS
    sharing_envs = QUICK_SHARING if args.quick else tuple(
        s for s in SHARING if setting != "0" or s[0] != "HalfCheetah-v5")
    kept = kept_runs(args, "sac")
    # the cheapest first, so that a time limit leaves the longest runs for later
    first, *rest = [(env_id, budget, mark, extra) for env_id, budget, mark, extra in sharing_envs]
    sharing = [_sharing(*first, seeds, kept)]
    race = _race(args.quick, kept)
    sharing += [_sharing(*block, seeds, kept) for block in rest]
    long_run = _long(kept) if setting == "1" else None
    plots = [plot_race(race, args.out)] + [plot_sharing(s, args.out) for s in sharing
                                           if any(m["runs"] for m in s["modes"])]
    if long_run is not None:
        plots.append(plot_long(long_run, args.out))
    return {"ranks": RANKS, "seeds": list(seeds), "long_setting": setting, "race": race,
            "sharing": sharing, "long": long_run, "long_pending": setting == "1" and not long_run,
            "kept": kept.summary(), "plots": plots}


# -- plots ----------------------------------------------------------------------------------------
def _axes(title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    fig.suptitle(title)
    for ax, label in zip(axes, ("global steps", "wall time (s)")):
        ax.set_xlabel(label)
        ax.set_ylabel(f"training return (last {WINDOW} episodes)")
    return plt, fig, axes


def _save(plt, fig, axes, mark: float, mark_label: str, path: str) -> str:
    for ax in axes:
        ax.axhline(mark, color="k", linestyle="--", linewidth=1, label=mark_label)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_race(race: dict, out_dir: str) -> str:
    plt, fig, axes = _axes(f"{race['env_id']}: SAC, up to {race['steps']:,} steps, preset "
                           f"{race['preset']}, seed 0")
    lines = ([("SB3, 1 thread", race["sb3"]["curve"])] if race["sb3"] else [])
    lines += [(f"mpirl, {m['ranks']} rank(s)", m["curve"]) for m in race["mpirl"]
              if not m.get("pending")]
    for name, curve in lines:
        for ax, column in zip(axes, (0, 1)):
            ax.plot([p[column] for p in curve], [p[2] for p in curve], label=name)
    return _save(plt, fig, axes, race["mark"], f"mark {race['mark']:g}",
                 os.path.join(out_dir, "sac-race.png"))


def _band(curves: list, column: int, grid: np.ndarray) -> np.ndarray:
    """Each seed's curve interpolated on ``grid`` of column ``column`` (0: global steps,
    1: seconds), as (seeds, len(grid))."""
    return np.array([np.interp(grid, [p[column] for p in c], [p[2] for p in c],
                               left=np.nan, right=np.nan) for c in curves if c])


def plot_sharing(block: dict, out_dir: str) -> str:
    plt, fig, axes = _axes(f"{block['env_id']}: SAC at {block['ranks']} ranks, replay sharing "
                           f"(preset {block['preset']})")
    for ax, column in zip(axes, (0, 1)):
        curves = [r["curve"] for m in block["modes"] for r in m["runs"]]
        end = max((c[-1][column] for c in curves if c), default=1)
        grid = np.linspace(0, end, 200)
        for mode in block["modes"]:
            band = _band([r["curve"] for r in mode["runs"]], column, grid)
            if len(band):
                with warnings.catch_warnings():   # past the end of every seed's curve: NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    ax.plot(grid, np.nanmean(band, axis=0),
                            label=f"{mode['mode']}, {len(band)} seeds (mean)")
                    ax.fill_between(grid, np.nanmin(band, axis=0), np.nanmax(band, axis=0),
                                    alpha=0.2)
    return _save(plt, fig, axes, block["mark"], f"mark {block['mark']:g}",
                 os.path.join(out_dir, f"sac-sharing-{block['env_id']}.png"))


def plot_long(long_run: dict, out_dir: str) -> str:
    plt, fig, axes = _axes(f"{long_run['env_id']}: SAC at {long_run['ranks']} ranks, "
                           f"{long_run['steps']:,} steps")
    for ax, column in zip(axes, (0, 1)):
        ax.plot([p[column] for p in long_run["curve"]], [p[2] for p in long_run["curve"]],
                label="mpirl")
    return _save(plt, fig, axes, ZOO[0], f"rl-zoo {ZOO[0]} (one run, v3)",
                 os.path.join(out_dir, f"sac-long-{long_run['env_id']}.png"))


# -- the table ------------------------------------------------------------------------------------
def _reached(point) -> tuple[str, str]:
    return (f"{point[0]:,}", f"{point[1]:.0f}") if point else ("not reached", "—")


def _race_lines(race: dict) -> list:
    s = race["settings"]
    lines = [f"Race on {race['env_id']}, up to {race['steps']:,} steps, seed 0, both with the "
             f"settings of mpirl's `{race['preset']}` preset (learning rate "
             f"{s['learning_rate']:g}, batch {s['batch_size']}, buffer {s['buffer_size']:,}, "
             f"learning_starts {s['learning_starts']:,}, tau {s['tau']:g}, gamma {s['gamma']:g}, "
             f"train_freq {s['train_freq']}, gradient_steps {s['gradient_steps']}, net "
             f"{s['net_arch']}, ent_coef {s['ent_coef']}); the mark: a deterministic evaluation "
             f"({EVAL_EPISODES} episodes) of at least {race['mark']:,g}, taken every "
             f"{race['eval_every']:,} global steps and whenever the training episodes just "
             f"ended reach it; the run stops there:", "",
             "| trainer | steps/s (with learning) | vs SB3 | reached at step | after s |",
             "|---|---:|---:|---:|---:|"]
    sb3 = race["sb3"]
    rows = [("SB3 SAC, 1 thread", sb3)] + [(f"mpirl, {m['ranks']} rank(s)", m)
                                          for m in sorted(race["mpirl"],
                                                          key=lambda m: m["ranks"])]
    for name, entry in rows:
        if entry is None or entry.get("pending"):
            lines.append(f"| {name} | to come | — | — | — |")
            continue
        ratio = f"{entry['sps'] / sb3['sps']:.2f}x" if sb3 else "—"
        step, secs = _reached(entry["reached"])
        lines.append(f"| {name} | {entry['sps']:,.0f} | {ratio} | {step} | {secs} |")
    lines.append("")
    mark = f"{race['mark']:,g}"
    target = (f"Target: mpirl at 2 ranks reaches {mark} at least {SPEED}x sooner in wall time "
              f"than SB3: ")
    two = next(m for m in race["mpirl"] if m["ranks"] == 2)
    if sb3 is None or two.get("pending"):
        lines.append(target + "undecided until both runs are in.")
    elif len(race.get("cpus", [])) > 1:
        lines.append(target + f"undecided: the runs were kept from different machines "
                              f"({', '.join(race['cpus'])}).")
    elif race["ratio"] is None:
        lines.append(target + "mpirl at 2 ranks did not reach it, NOT met.")
    else:
        bound = "at least " if race["bound"] else ""
        verdict = {True: "met", False: "NOT met",
                   None: "undecided (SB3 did not reach the mark within the budget)"}[race["met"]]
        lines.append(target + f"{bound}{race['ratio']:.2f}x, {verdict}.")
    return lines


def _sharing_lines(block: dict) -> list:
    n = len(block["modes"][0]["runs"]) + block["modes"][0]["seeds_to_come"]
    options = f", {' '.join(block['options'])}" if block["options"] else ""
    lines = [f"Replay sharing on {block['env_id']} at {block['ranks']} ranks, {n} seeds, up to "
             f"{block['budget']:,} steps (preset {block['preset']}{options}); the mark: a "
             f"deterministic evaluation ({EVAL_EPISODES} episodes) of at least "
             f"{block['mark']:,g}, where the run stops; medians over all seeds with a seed that "
             f"never reached it counted as never; last evaluation: at the mark or at the end "
             f"of the budget:", "",
             "| replay sharing | seeds reaching the mark | median steps to it | median s to it "
             "| last evaluation | steps/s |", "|---|---:|---:|---:|---:|---:|"]
    for m in block["modes"]:
        if not m["runs"]:
            lines.append(f"| {m['mode']} | {m['seeds_to_come']} seeds to come | — | — | — | — |")
            continue
        steps = "never" if m["median_steps"] is None else f"{m['median_steps']:,}"
        secs = "never" if m["median_wall_s"] is None else f"{m['median_wall_s']:.0f}"
        sps = statistics.fmean(r["sps"] for r in m["runs"])
        more = f" ({m['seeds_to_come']} to come)" if m["seeds_to_come"] else ""
        lines.append(f"| {m['mode']} | {m['reached']} of {len(m['runs'])}{more} | {steps} | "
                     f"{secs} | {m['eval_mean']:.1f} ± {m['eval_std']:.1f} | {sps:,.0f} |")
    shared, alone = block["modes"][0], block["modes"][1]
    if shared["seeds_to_come"] or alone["seeds_to_come"]:
        finding = "to come, once every seed has run"
    elif shared["median_steps"] is None:
        finding = "allgather's median seed did not reach the mark"
    elif alone["median_steps"] is None:
        finding = "allgather reached it where none's median seed did not"
    else:
        finding = (f"none takes {alone['median_steps'] / shared['median_steps']:.2f}x the steps "
                   f"and {alone['median_wall_s'] / max(shared['median_wall_s'], 1e-9):.2f}x the "
                   f"seconds of allgather")
    lines += ["", f"Sharing against none ({block['env_id']}): {finding}."]
    return lines


def table(result: dict) -> str:
    lines = _race_lines(result["race"])
    for block in result["sharing"]:
        lines += [""] + _sharing_lines(block)
    long_run = result.get("long")
    if long_run:
        lines += ["", f"One long run: {long_run['env_id']} at {long_run['ranks']} ranks, "
                      f"{long_run['steps']:,} steps in {long_run['wall_s'] / 3600:.1f} h "
                      f"({long_run['sps']:,.0f} steps/s); final evaluation "
                      f"{long_run['final_eval']:.1f} ({EVAL_EPISODES} episodes) against "
                      f"rl-zoo's {ZOO[0]} ± {ZOO[1]} (SAC, HalfCheetah-v3, one run).",
                  f"Target: at least rl-zoo's mean - std ({long_run['target']:.1f}): "
                  f"{'met' if long_run['met'] else 'NOT met'}; rl-zoo's mean reached: "
                  f"{'yes' if long_run['stretch'] else 'no'}."]
    elif result.get("long_pending"):
        lines += ["", "The long run (HalfCheetah-v5, 1,000,000 steps): to come."]
    elif not result.get("quick"):
        lines += ["", "The long run (HalfCheetah-v5, 1,000,000 steps) runs only with "
                      "MPIRL_BENCH_SAC_LONG=1."]
    if not result.get("quick") and result.get("long_setting") == "0":
        lines.append("HalfCheetah-v5's sharing comparison was left out (MPIRL_BENCH_SAC_LONG=0).")
    kept = result.get("kept") or {}
    if kept.get("skipped"):
        names = kept["skipped"] if len(kept["skipped"]) <= 3 else kept["skipped"][:2] + ["..."]
        lines += ["", f"Stopped by --time-limit: {len(kept['skipped'])} run(s) to come "
                      f"({', '.join(names)}). The same command with the same --out goes on "
                      f"from the kept runs."]
    if kept.get("reused"):
        lines.append(f"{len(kept['reused'])} run(s) were kept from an earlier invocation "
                     f"(machines: {', '.join(kept['cpus'])}).")
    if "seconds" in result and not result.get("quick"):
        lines.append(f"This invocation took {result['seconds'] / 60:.0f} minutes.")
    return "\n".join(lines)
