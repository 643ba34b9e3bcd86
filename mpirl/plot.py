"""``python -m mpirl.plot RUN_DIR... [options]``: learning curves over seeds and runs.

    python -m mpirl.plot runs/acrobot_*                         # one curve: runs that differ in seed
    python -m mpirl.plot runs/* --group-by sync_mode --x time   # a curve per sync mode
    python -m mpirl.plot sweep/ --metric episode_return_mean --out curves.png

Runs whose configurations differ only in their seed (and run dir) form one curve; ``--group-by
KEY`` groups by that option instead. Each curve is the mean over its runs of the metric (default:
the evaluation return, else the training episodes'), against global steps or wall time, with a
95% bootstrap confidence band over the runs. A run still in progress plots what it has. The PNG
comes with a CSV of every plotted point.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import sys
import warnings

import numpy as np
import yaml

from mpirl.cli import ArgumentParser
from mpirl.errors import ConfigError

PROG = "python -m mpirl.plot"
# Options that tell runs apart without making them different experiments.
NOT_THE_EXPERIMENT = {"seed", "run_dir", "resume", "config", "tensorboard", "log_interval",
                      "checkpoint_interval", "keep_checkpoints", "hang_timeout",
                      "desync_check_interval", "eval_interval", "eval_episodes", "torch_threads"}
LABEL_KEYS = 4   # a curve's label names at most this many options, these first:
FIRST = ("env_id", "tasks", "algo", "preset", "sync_mode", "pipeline_stages", "replay_sharing",
         "task_weighting")
X_KEYS = {"steps": "global_step", "time": "time_s"}


def read_run(run_dir: str) -> dict:
    """A run's configuration and metrics, as far as it got."""
    try:
        with open(os.path.join(run_dir, "config.yaml")) as fh:
            config = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{run_dir} is not an mpirl run dir (config.yaml: {exc})") from None
    records = []
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
            for line in fh:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    break   # a line cut short: the run is being written
    except OSError:
        pass
    return {"dir": run_dir, "config": config, "records": records}


def find_runs(paths: list[str]) -> list[str]:
    """The run dirs among ``paths``: each a run dir, or a folder of them (a sweep)."""
    found = []
    for path in paths:
        if os.path.isfile(os.path.join(path, "config.yaml")):
            found.append(path)
        else:
            found += sorted(os.path.dirname(p) for p in
                            glob.glob(os.path.join(path, "*", "config.yaml")))
    return found


def group_runs(runs: list[dict], group_by: list[str] | None = None) -> dict[str, list[dict]]:
    """Curves by label: ``group_by``'s values, or else every option that differs between the
    runs other than their seed and bookkeeping."""
    if group_by:
        keys = list(group_by)
    else:   # (options every run records: configs of older versions lack newer ones)
        shared = set.intersection(*(set(run["config"]) for run in runs)) - NOT_THE_EXPERIMENT
        keys = sorted((k for k in shared
                       if len({json.dumps(run["config"][k]) for run in runs}) > 1),
                      key=lambda k: (FIRST.index(k) if k in FIRST else len(FIRST), k))
    groups: dict[str, list[dict]] = {}
    for run in runs:
        named = [f"{k}={run['config'].get(k)}" for k in keys]
        label = ", ".join(named[:LABEL_KEYS]) + (f" (+{len(named) - LABEL_KEYS} more)"
                                                 if len(named) > LABEL_KEYS else "")
        groups.setdefault(label or "all runs", []).append(run)
    return groups


def curve(run: dict, metric: str, x_key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(r[x_key], r[metric]) for r in run["records"]
              if r.get(metric) is not None and r.get(x_key) is not None]
    if not points:
        return np.zeros(0), np.zeros(0)
    xs, ys = zip(*points)
    return np.asarray(xs, np.float64), np.asarray(ys, np.float64)


def on_grid(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """Each curve interpolated on ``grid``: (runs, points), NaN outside a run's own range."""
    out = np.full((len(curves), len(grid)), np.nan)
    for i, (xs, ys) in enumerate(curves):
        if len(xs):
            inside = (grid >= xs[0]) & (grid <= xs[-1])
            out[i, inside] = np.interp(grid[inside], xs, ys)
    return out


def bootstrap_band(values: np.ndarray, confidence: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs (axis 0) of ``values`` (runs, points) and a ``confidence`` bootstrap band
    of that mean: the runs resampled with replacement ``resamples`` times (the same draws at
    every point), the band between the percentiles of the resampled means. NaN where no run
    has a value; where one run has, the band is that value."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    draws = rng.integers(0, n, size=(resamples, n))
    with warnings.catch_warnings():   # a draw of runs that have no value there: NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(values, axis=0)
        resampled = np.nanmean(values[draws], axis=1)               # (resamples, points)
        tail = 100 * (1 - confidence) / 2
        low, high = np.nanpercentile(resampled, [tail, 100 - tail], axis=0)
    return means, low, high


def plot(paths: list[str], x: str = "steps", metric: str | None = None,
         group_by: list[str] | None = None, out: str = "curves.png", points: int = 200) -> dict:
    """The curves of the runs under ``paths``: writes ``out`` (PNG) and ``out`` with .csv;
    returns {label: {x, mean, low, high, runs}}."""
    run_dirs = find_runs(paths)
    if not run_dirs:
        raise ConfigError(f"no mpirl run dir (with a config.yaml) under {', '.join(paths)}")
    runs = [read_run(d) for d in run_dirs]
    x_key = X_KEYS[x]
    if metric is None:
        metric = ("eval_return_mean" if any(r.get("eval_return_mean") is not None
                                            for run in runs for r in run["records"])
                  else "episode_return_mean")
    with_metric = [run for run in runs if len(curve(run, metric, x_key)[0])]
    if not with_metric:
        raise ConfigError(f"nothing to plot: none of the {len(runs)} run(s) has logged "
                          f"{metric} yet (runs: {', '.join(run_dirs[:3])}"
                          f"{', ...' if len(run_dirs) > 3 else ''})")
    envs = {run["config"].get("env_id") if not run["config"].get("tasks")
            else run["config"]["tasks"] for run in with_metric}
    if len(envs) > 1 and not group_by:
        group_by = ["env_id", "tasks"] if any(run["config"].get("tasks") for run in with_metric) \
            else ["env_id"]
    result = {}
    for label, members in group_runs(with_metric, group_by).items():
        curves = [curve(run, metric, x_key) for run in members]
        end = max(xs[-1] for xs, _ in curves)
        grid = np.linspace(min(xs[0] for xs, _ in curves), end, points)
        mean, low, high = bootstrap_band(on_grid(curves, grid))
        result[label] = {"x": grid, "mean": mean, "low": low, "high": high,
                         "runs": [run["dir"] for run in members]}
    write_png(result, out, x, metric, title=next(iter(envs)) if len(envs) == 1 else None)
    write_csv(result, os.path.splitext(out)[0] + ".csv")
    return result


def write_png(result: dict, out: str, x: str, metric: str, title: str | None = None) -> None:
    """The curves, each with its band; ``title``: the environment they all share."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, c in result.items():
        n = len(c["runs"])
        line, = ax.plot(c["x"], c["mean"], label=f"{label} ({n} run{'s' * (n > 1)})")
        if n > 1:
            ax.fill_between(c["x"], c["low"], c["high"], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("global steps" if x == "steps" else "wall time (s)")
    ax.set_ylabel(metric)
    ax.set_title(f"{title + ': ' if title else ''}mean over runs, 95% bootstrap confidence band")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_csv(result: dict, path: str) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["curve", "x", "mean", "ci_low", "ci_high", "runs"])
        for label, c in result.items():
            for i in range(len(c["x"])):
                writer.writerow([label, f"{c['x'][i]:.6g}", f"{c['mean'][i]:.6g}",
                                 f"{c['low'][i]:.6g}", f"{c['high'][i]:.6g}", len(c["runs"])])


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description="Learning curves of mpirl runs, mean and 95% "
                            "bootstrap band over the runs that differ only in their seed.")
    parser.add_argument("runs", nargs="+", help="run dirs, or folders of run dirs (a sweep)")
    parser.add_argument("--x", choices=tuple(X_KEYS), default="steps",
                        help="global steps or wall time (default steps)")
    parser.add_argument("--metric", help="any key of metrics.jsonl (default: eval_return_mean, "
                                         "else episode_return_mean)")
    parser.add_argument("--group-by", action="append", metavar="KEY",
                        help="a curve per value of this option (repeatable), e.g. sync_mode")
    parser.add_argument("--out", default="curves.png", help="the PNG (and its .csv beside it)")
    try:
        args = parser.parse_args(argv)
        result = plot(args.runs, args.x, args.metric, args.group_by, args.out)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for label, c in result.items():
        last = c["mean"][~np.isnan(c["mean"])]
        print(f"{label}: {len(c['runs'])} run(s), last mean {last[-1]:.2f}" if len(last)
              else f"{label}: {len(c['runs'])} run(s)")
    print(f"wrote {args.out} and {os.path.splitext(args.out)[0]}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
