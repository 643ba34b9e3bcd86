"""Bench section "zoo": what users bring, against the published tables.

Every environment below trains 5 seeds at 2 ranks as ``python -m mpirl.train --env-id ENV``
would train it (its shipped preset, or the defaults), for the budget of global steps its
reference was measured at. A seed's score is its final deterministic evaluation (10 episodes).

    target    the better of CleanRL's and OpenAI Baselines' means (over seeds); where neither
              publishes one, rl-zoo's mean minus its std (rl-zoo reports one tuned run)
    stretch   rl-zoo's tuned figure

It writes the table, and one learning-curve PNG per environment (the training episodes' mean
return, mean and spread over seeds, by global steps and by wall time).

Beside them, Stable-Baselines3's PPO on HalfCheetah-v5 with the hyperparameters of mpirl's MuJoCo
preset, in the same run on the same machine: steps/s of SB3 (one thread) against mpirl at 1 and 2
ranks, and for both the wall time to reach CleanRL's published mean on HalfCheetah.
For DQN rows, SB3's DQN with the settings of the same preset on the same seeds, so that a gap to
rl-zoo's one published run can be told from a gap to SB3 itself.
``--quick``: two envs, tiny budgets, two seeds: a smoke run for the tests.

Every run is kept under ``OUT/runs`` (:mod:`mpirl.bench.kept`): with ``--time-limit MINUTES`` no
new run starts after the limit, the table says which seeds are still to come, and the same
command with the same ``--out`` goes on from the kept runs.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass

import numpy as np

from mpirl import presets
from mpirl.config import parse_rollout
from mpirl.bench.kept import KeptRuns, kept_runs, run_preset, train_key
from mpirl.bench.sb3 import run_sb3, sb3_installed
from mpirl.launch import train

RANKS = 2
SEEDS = (0, 1, 2, 3, 4)
EVAL_EPISODES = 10


@dataclass(frozen=True)
class Reference:
    """An environment, its budget of global steps, and the published figures (mean, std)."""
    env_id: str
    budget: int
    algo: str = "ppo"
    cleanrl: tuple | None = None
    baselines: tuple | None = None
    zoo: tuple | None = None           # (mean, std, at steps): one tuned run, deterministic eval

    @property
    def target(self) -> float:
        means = [ref[0] for ref in (self.cleanrl, self.baselines) if ref is not None]
        return max(means) if means else self.zoo[0] - self.zoo[1]

    @property
    def target_source(self) -> str:
        if self.cleanrl is None and self.baselines is None:
            return "rl-zoo mean - std"
        if self.baselines is not None and (self.cleanrl is None
                                           or self.baselines[0] >= self.cleanrl[0]):
            return "Baselines ppo2"
        return "CleanRL"


# Published figures: CleanRL's docs (ppo.py, ppo_continuous_action.py on v2, 3 seeds; Baselines'
# ppo2 as CleanRL quotes it), rl-baselines3-zoo benchmark.md (one tuned run). MuJoCo v2/v3 and
# LunarLander-v2 in the tables; v5 and v3 here, the ids gymnasium 1.x registers.
ENVS = (
    Reference("CartPole-v1", 500_000, cleanrl=(492.40, 13.05), baselines=(497.54, 4.02),
              zoo=(500.0, 0.0, 100_000)),
    Reference("Acrobot-v1", 500_000, cleanrl=(-89.93, 6.34), baselines=(-81.82, 5.58),
              zoo=(-73.5, 18.2, 1_000_000)),
    Reference("Pendulum-v1", 100_000, zoo=(-172.2, 104.2, 100_000)),
    Reference("LunarLander-v3", 1_000_000, zoo=(242.1, 31.8, 1_000_000)),
    Reference("HalfCheetah-v5", 1_000_000, cleanrl=(1822.82, 928.11),
              baselines=(2152.26, 1159.84), zoo=(5819.1, 663.5, 1_000_000)),
    Reference("Hopper-v5", 1_000_000, cleanrl=(2231.12, 656.72), baselines=(2518.95, 850.46),
              zoo=(2410.4, 10.0, 1_000_000)),
    Reference("MountainCar-v0", 120_000, algo="dqn", zoo=(-100.8, 9.9, 120_000)),
)
QUICK = {"CartPole-v1": 8_192, "Pendulum-v1": 8_192}
# CleanRL's published mean on HalfCheetah (v2), the mark both trainers race to, with the settings
# of the preset HalfCheetah-v5 trains with, for a fixed budget.
RACE_ENV, RACE_MARK, RACE_STEPS = "HalfCheetah-v5", 1822.82, 300_000


def _train_seed(ref: Reference, seed: int, budget: int, kept: KeptRuns) -> dict | None:
    """One seed of ``ref`` at RANKS ranks (kept, or trained now); None: left for later."""
    args = ["--env-id", ref.env_id, "--algo", ref.algo, "--seed", str(seed),
            "--total-timesteps", str(budget), "--eval-episodes", str(EVAL_EPISODES),
            "--eval-interval", str(10 ** 9), "--no-tensorboard", "--log-interval", str(10 ** 9)]

    def produce(run_dir: str) -> dict:
        t0 = time.perf_counter()
        train(RANKS, [*args, "--run-dir", run_dir], timeout=3 * 3600).check()
        wall = time.perf_counter() - t0
        with open(os.path.join(run_dir, "summary.json")) as fh:
            summary = json.load(fh)
        with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
            lines = [json.loads(line) for line in fh]
        curve = [(m["global_step"], m["time_s"], m["episode_return_mean"]) for m in lines
                 if m.get("episode_return_mean") is not None]
        preset = run_preset(run_dir)
        return {"seed": seed, "final_eval": summary["eval_return_mean"],
                "wall_s": round(wall, 1), "sps": round(summary["sps"]), "preset": preset,
                "curve": curve}

    return kept.run(f"{ref.env_id}-{seed}", train_key(RANKS, args), produce)


def _row(ref: Reference, budget: int, seeds: tuple, kept: KeptRuns) -> dict:
    """An environment's seeds (those run so far) against its references."""
    runs = [r for r in (_train_seed(ref, seed, budget, kept) for seed in seeds) if r is not None]
    finals = [r["final_eval"] for r in runs]
    whole = len(runs) == len(seeds)
    mean = statistics.fmean(finals) if runs else None
    row = {"env_id": ref.env_id, "algo": ref.algo, "budget": budget,
           "preset": runs[0]["preset"] if runs else None, "seeds_to_come": len(seeds) - len(runs),
           "mean": mean, "std": statistics.pstdev(finals) if runs else None, "finals": finals,
           "wall_s": [r["wall_s"] for r in runs], "sps": [r["sps"] for r in runs],
           "target": ref.target, "target_source": ref.target_source,
           "cleanrl": ref.cleanrl, "baselines": ref.baselines, "zoo": ref.zoo,
           "met": bool(mean >= ref.target) if whole else None,
           "stretch": None if ref.zoo is None or not whole else bool(mean >= ref.zoo[0]),
           "curves": [r["curve"] for r in runs]}
    if ref.algo == "dqn":   # SB3's DQN with the same settings, on the same seeds
        settings = sb3_dqn_settings(presets.for_env("dqn", ref.env_id))
        sb3 = [kept.run(f"sb3-dqn-{ref.env_id}-{seed}",
                        ["sb3-dqn", ref.env_id, budget, seed, settings],
                        lambda _, seed=seed: _sb3_dqn_seed(ref.env_id, budget, seed, settings))
               for seed in seeds] if sb3_installed() else [None]
        row["sb3"] = (None if None in sb3 else
                      {"finals": sb3, "mean": statistics.fmean(sb3),
                       "std": statistics.pstdev(sb3), "settings": settings})
    if runs:
        print(f"  {ref.env_id}: {mean:.1f} +- {row['std']:.1f} over {len(runs)} seeds "
              f"(target {ref.target:.1f})", flush=True)
    return row


def sb3_settings(preset: presets.Preset) -> dict:
    """SB3 PPO's arguments for the settings of an mpirl preset (one env: SB3 runs the whole
    rollout in one process), and what SB3 cannot take: a trunk shared by policy and value."""
    o, envs_steps = preset.options, parse_rollout(preset.options["rollout"])
    batch = envs_steps[0] * envs_steps[1]
    lr = float(o["learning_rate"])
    return {"n_steps": batch, "batch_size": batch // int(o["num_minibatches"]),
            "n_epochs": int(o["update_epochs"]), "learning_rate": lr,
            "anneal_lr": bool(o.get("anneal_lr", True)), "gamma": float(o["gamma"]),
            "gae_lambda": float(o["gae_lambda"]), "clip_range": float(o["clip_coef"]),
            "clip_range_vf": float(o["clip_coef"]) if o.get("clip_vloss", True) else None,
            "ent_coef": float(o["ent_coef"]), "vf_coef": float(o.get("vf_coef", 0.5)),
            "max_grad_norm": float(o["max_grad_norm"]),
            "net_arch": list(o.get("hidden_sizes", [64, 64])),
            "activation": o.get("activation", "tanh"),
            "log_std_init": float(o.get("log_std_init", 0.0)),
            "normalize_obs": bool(o.get("normalize_obs", True)),
            "normalize_reward": bool(o.get("normalize_reward", True))}


def sb3_dqn_settings(preset: presets.Preset, ranks: int = RANKS) -> dict:
    """SB3 DQN's arguments for the settings of an mpirl DQN preset trained at ``ranks`` ranks of
    one env each, as one learner: the global batch, gradient steps per ``train_freq`` env steps
    from the samples per insert, the target network's interval in env steps."""
    o = preset.options
    batch = int(o["batch_size"]) * ranks
    train_freq = int(o["train_frequency"])
    gradient_steps = round(float(o["samples_per_insert"]) * train_freq / batch)
    return {"learning_rate": float(o["learning_rate"]), "batch_size": batch,
            "buffer_size": int(o["buffer_size"]), "learning_starts": int(o["learning_starts"]),
            "gamma": float(o["gamma"]), "train_freq": train_freq,
            "gradient_steps": gradient_steps,
            "target_update_interval": int(o["target_network_frequency"]) * train_freq
            // gradient_steps,
            "exploration_fraction": float(o["exploration_fraction"]),
            "exploration_initial_eps": float(o["start_e"]),
            "exploration_final_eps": float(o["end_e"]),
            "net_arch": list(o.get("hidden_sizes", [64, 64]))}


def _sb3_dqn_seed(env_id: str, budget: int, seed: int, settings: dict) -> float | None:
    """SB3's DQN with ``settings`` (:func:`sb3_dqn_settings`) for ``budget`` steps, one thread:
    the final deterministic evaluation's mean over EVAL_EPISODES; None without SB3."""
    code = f"""
import json, gymnasium as gym, torch
torch.set_num_threads(1)
from stable_baselines3 import DQN
from stable_baselines3.common.evaluation import evaluate_policy
s = json.loads({json.dumps(json.dumps(settings))})
model = DQN("MlpPolicy", "{env_id}", learning_rate=s["learning_rate"],
            batch_size=s["batch_size"], buffer_size=s["buffer_size"],
            learning_starts=s["learning_starts"], gamma=s["gamma"], train_freq=s["train_freq"],
            gradient_steps=s["gradient_steps"], target_update_interval=s["target_update_interval"],
            exploration_fraction=s["exploration_fraction"],
            exploration_initial_eps=s["exploration_initial_eps"],
            exploration_final_eps=s["exploration_final_eps"],
            policy_kwargs=dict(net_arch=s["net_arch"]), seed={seed}, device="cpu")
model.learn({budget})
env = gym.make("{env_id}")
env.reset(seed={seed + 10_000})
mean, _ = evaluate_policy(model, env, n_eval_episodes={EVAL_EPISODES}, deterministic=True)
print(json.dumps({{"mean": float(mean)}}))
"""
    result = run_sb3(code, timeout=3 * 3600)
    return None if result is None else result["mean"]


def _sb3_race(steps: int, settings: dict) -> dict | None:
    """SB3 PPO on the race env with ``settings`` (:func:`sb3_settings`), one thread; None
    without SB3."""
    code = f"""
import json, time, numpy as np, torch
torch.set_num_threads(1)
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize
from stable_baselines3.common.callbacks import BaseCallback
s = json.loads({json.dumps(json.dumps(settings))})
class Mark(BaseCallback):
    def __init__(self):
        super().__init__(); self.t0 = time.perf_counter(); self.reached = None; self.returns = []
    def _on_step(self):
        for info in self.locals["infos"]:
            if "episode" in info:
                self.returns.append(info["episode"]["r"])
                if (self.reached is None and len(self.returns) >= 10
                        and np.mean(self.returns[-10:]) >= {RACE_MARK}):
                    self.reached = (self.num_timesteps, time.perf_counter() - self.t0)
        return True
env = VecNormalize(make_vec_env("{RACE_ENV}", n_envs=1, seed=0), gamma=s["gamma"],
                   norm_obs=s["normalize_obs"], norm_reward=s["normalize_reward"])
lr = s["learning_rate"]
model = PPO("MlpPolicy", env, n_steps=s["n_steps"], batch_size=s["batch_size"],
            n_epochs=s["n_epochs"], learning_rate=(lambda f: lr * f) if s["anneal_lr"] else lr,
            gamma=s["gamma"], gae_lambda=s["gae_lambda"], clip_range=s["clip_range"],
            clip_range_vf=s["clip_range_vf"], ent_coef=s["ent_coef"], vf_coef=s["vf_coef"],
            max_grad_norm=s["max_grad_norm"], seed=0, device="cpu",
            policy_kwargs=dict(net_arch=s["net_arch"], log_std_init=s["log_std_init"],
                               activation_fn=dict(tanh=torch.nn.Tanh, relu=torch.nn.ReLU)[s["activation"]]))
mark = Mark()
t0 = time.perf_counter()
model.learn({steps}, callback=mark)
wall = time.perf_counter() - t0
print(json.dumps({{"steps": {steps}, "wall_s": wall, "sps": {steps} / wall,
                   "reached": mark.reached, "last10": float(np.mean(mark.returns[-10:]))}}))
"""
    return run_sb3(code, timeout=6 * 3600)


def _mpirl_race_args(steps: int, preset: str) -> list[str]:
    """mpirl's command line in the race: the race env with ``preset`` (SB3's settings)."""
    return ["--env-id", RACE_ENV, "--preset", preset, "--seed", "0", "--total-timesteps",
            str(steps), "--eval-interval", str(10 ** 9), "--eval-episodes", "1", "--no-tensorboard"]


def _mpirl_race(ranks: int, args: list[str], run_dir: str) -> dict:
    """mpirl's race at ``ranks`` ranks: steps/s, and when the training episodes' mean return
    over the last 10 or so first reached the mark."""
    train(ranks, [*args, "--run-dir", run_dir], timeout=6 * 3600).check()
    with open(os.path.join(run_dir, "summary.json")) as fh:
        summary = json.load(fh)
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        lines = [json.loads(line) for line in fh]
    reached, window = None, []   # (episodes, mean) of the latest updates, >= 10 episodes
    for m in lines:
        if m.get("episodes"):
            window = (window + [(m["episodes"], m["episode_return_mean"])])[-10:]
            while len(window) > 1 and sum(n for n, _ in window[1:]) >= 10:
                window = window[1:]
            episodes = sum(n for n, _ in window)
            if episodes >= 10 and sum(n * r for n, r in window) / episodes >= RACE_MARK:
                reached = [m["global_step"], m["time_s"]]
                break
    return {"ranks": ranks, "steps": summary["global_steps"], "wall_s": summary["wall_time_s"],
            "sps": summary["sps"], "reached": reached}


def _race(steps: int, kept: KeptRuns) -> dict:
    """SB3 and mpirl at 1 and 2 ranks on the race env; a run left for later is None."""
    preset = presets.for_env("ppo", RACE_ENV)
    settings = sb3_settings(preset)
    sb3 = kept.run("race-sb3", ["sb3-ppo", RACE_ENV, steps, RACE_MARK, settings],
                   lambda _: _sb3_race(steps, settings)) if sb3_installed() else None
    args = _mpirl_race_args(steps, preset.name)
    mpirl = [kept.run(f"race-mpirl-{n}", [*train_key(n, args), RACE_MARK],
                      lambda run_dir, n=n: _mpirl_race(n, args, run_dir))
             for n in (1, 2)]
    cpus = sorted(kept.cpus(["race-sb3", "race-mpirl-1", "race-mpirl-2"]))
    return {"env_id": RACE_ENV, "mark": RACE_MARK, "steps": steps, "preset": preset.name,
            "settings": settings, "sb3": sb3, "cpus": cpus,
            "mpirl": [m if m is not None else {"ranks": n, "pending": True}
                      for n, m in zip((1, 2), mpirl)]}


def run(args) -> dict:
    envs = [r for r in ENVS if r.env_id in QUICK] if args.quick else list(ENVS)
    seeds = SEEDS[:2] if args.quick else SEEDS
    kept = kept_runs(args, "zoo")
    # the race first: a quarter of an hour, where the table's rows take hours (--time-limit)
    race = _race(20_000 if args.quick else RACE_STEPS, kept)
    rows = [_row(ref, QUICK[ref.env_id] if args.quick else ref.budget, seeds, kept)
            for ref in envs]
    plots = [plot_curves(row, args.out) for row in rows if row["curves"]]
    return {"ranks": RANKS, "seeds": list(seeds), "rows": rows, "race": race,
            "kept": kept.summary(), "plots": plots}


def _band(curves: list, column: int, grid: np.ndarray) -> np.ndarray:
    """Each seed's training return interpolated on ``grid`` of column ``column`` (0: global
    steps, 1: seconds), as (seeds, len(grid))."""
    out = []
    for curve in curves:
        if not curve:
            continue
        xs = np.array([point[column] for point in curve])
        ys = np.array([point[2] for point in curve])
        out.append(np.interp(grid, xs, ys, left=np.nan, right=np.nan))
    return np.array(out)


def plot_curves(row: dict, out_dir: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, column, label in ((axes[0], 0, "global steps"), (axes[1], 1, "wall time (s)")):
        # from the first seed's first episode to the last seed's last: some seed has each point
        start = min((c[0][column] for c in row["curves"] if c), default=0)
        end = max((c[-1][column] for c in row["curves"] if c), default=1)
        grid = np.linspace(start, end, 200)
        band = _band(row["curves"], column, grid)
        if len(band):
            mean = np.nanmean(band, axis=0)
            ax.plot(grid, mean, label=f"mpirl, {len(band)} seeds (mean)")
            ax.fill_between(grid, np.nanmin(band, axis=0), np.nanmax(band, axis=0), alpha=0.25,
                            label="min-max over seeds")
        ax.axhline(row["target"], color="k", linestyle="--", linewidth=1,
                   label=f"target ({row['target_source']})")
        ax.set_xlabel(label)
        ax.set_ylabel("training episode return")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{row['env_id']} ({row['algo']}, preset {row['preset']}, {RANKS} ranks)")
    fig.tight_layout()
    path = os.path.join(out_dir, f"zoo-{row['env_id']}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _published(ref) -> str:
    return "—" if ref is None else f"{ref[0]:.1f} ± {ref[1]:.1f}"


def table(result: dict) -> str:
    lines = [f"{result['ranks']} ranks, seeds {result['seeds']}; a seed's score is its final "
             f"evaluation ({EVAL_EPISODES} episodes, deterministic).", "",
             "| env | algo | preset | budget | mpirl | CleanRL | Baselines | rl-zoo (one run) "
             "| target | met | rl-zoo reached | s / seed | steps/s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|"]
    for r in result["rows"]:
        to_come = r.get("seeds_to_come", 0)
        if not r["finals"]:
            score = f"{to_come} seeds to come"
        else:
            score = f"{r['mean']:.1f} ± {r['std']:.1f}" + (
                f" ({len(r['finals'])} seeds, {to_come} to come)" if to_come else "")
        met = "to come" if r["met"] is None else ("met" if r["met"] else "NOT met")
        timing = ((f"{statistics.fmean(r['wall_s']):.0f} | {statistics.fmean(r['sps']):,.0f}")
                  if r["finals"] else "— | —")
        lines.append(
            f"| {r['env_id']} | {r['algo']} | {r['preset'] or '—'} | {r['budget']:,} | "
            f"{score} | {_published(r['cleanrl'])} | "
            f"{_published(r['baselines'])} | {_published(r['zoo'])} | {r['target']:.1f} "
            f"({r['target_source']}) | {met} | "
            f"{'—' if r['stretch'] is None else ('yes' if r['stretch'] else 'no')} | {timing} |")
    same = [r for r in result["rows"] if r.get("sb3")]
    if same:
        lines += ["", "SB3's DQN with the settings of mpirl's preset (one learner with the global "
                      "batch, the same gradient steps per env step and target interval), the "
                      "same seeds and evaluation:", "",
                  "| env | budget | mpirl (2 ranks) | SB3 DQN (1 process) | rl-zoo (one run) |",
                  "|---|---:|---:|---:|---:|"]
        for r in same:
            lines.append(f"| {r['env_id']} | {r['budget']:,} | {r['mean']:.1f} ± {r['std']:.1f} "
                         f"| {r['sb3']['mean']:.1f} ± {r['sb3']['std']:.1f} | "
                         f"{_published(r['zoo'])} |")
    race = result.get("race")
    if race:
        lines += ["", f"{race['env_id']}, {race['steps']:,} steps, both with the settings of "
                      f"mpirl's `{race['preset']}` preset (SB3: separate policy and value "
                      f"networks; mpirl: one shared trunk); time to a mean training return of "
                      f"{race['mark']} (CleanRL's published mean) over the last 10 episodes:",
                  "",
                  "| trainer | steps/s | vs SB3 | reached at step | after s |",
                  "|---|---:|---:|---:|---:|"]
        sb3 = race["sb3"]
        rows = [("SB3 PPO, 1 thread", sb3)] + [(f"mpirl, {m['ranks']} rank(s)", m)
                                              for m in race["mpirl"]]
        for name, entry in rows:
            if entry is None or entry.get("pending"):
                lines.append(f"| {name} | to come | — | — | — |")
                continue
            ratio = f"{entry['sps'] / sb3['sps']:.2f}x" if sb3 else "—"
            reached = entry["reached"]
            step, secs = (f"{reached[0]:,}", f"{reached[1]:.0f}") if reached else ("not reached", "—")
            lines.append(f"| {name} | {entry['sps']:,.0f} | {ratio} | {step} | {secs} |")
        two = next(m for m in race["mpirl"] if m["ranks"] == 2)
        target = "Target: mpirl at 2 ranks at least 3x SB3's steps/s: "
        if sb3 is None or two.get("pending"):
            lines += ["", target + "undecided until both runs are in (SB3 needs the bench extra: "
                                   "`pip install 'mpirl[bench]'`)."]
        elif len(race.get("cpus", [])) > 1:
            lines += ["", target + f"undecided: the runs were kept from different machines "
                                   f"({', '.join(race['cpus'])})."]
        else:
            ratio = two["sps"] / sb3["sps"]
            lines += ["", target + f"{ratio:.2f}x, {'met' if ratio >= 3 else 'NOT met'}."]
    met = sum(bool(r["met"]) for r in result["rows"])
    to_come = sum(r["met"] is None for r in result["rows"])
    lines += ["", f"Targets met: {met} of {len(result['rows'])} environments"
                  + (f" ({to_come} still to come)." if to_come else ".")]
    kept = result.get("kept") or {}
    if kept.get("skipped"):
        lines += ["", f"Stopped by --time-limit: {len(kept['skipped'])} run(s) to come. The same "
                      f"command with the same --out goes on from the kept runs."]
    if kept.get("reused"):
        lines.append(f"{len(kept['reused'])} run(s) were kept from an earlier invocation "
                     f"(machines: {', '.join(kept['cpus'])}).")
    if "seconds" in result and not result.get("quick"):
        minutes = result["seconds"] / 60
        if kept.get("reused") or kept.get("skipped"):
            lines.append(f"This invocation took {minutes:.0f} minutes; the section's time is "
                         f"that of one invocation that runs it whole (target: under 90).")
        else:
            lines.append(f"The whole section took {minutes:.0f} minutes (target: under 90): "
                         f"{'met' if minutes < 90 else 'NOT met'}.")
    return "\n".join(lines)
