"""Sweeps: a YAML grid of options x seeds, one run per combination, then one table and one plot.

    # sweep.yaml
    options:                     # every run's
      env-id: Acrobot-v1
      total-timesteps: 200000
    grid:                        # every combination of these ...
      learning-rate: [3.0e-4, 1.0e-3]
      sync-mode: [allreduce, local-sgd]
    seeds: [0, 1, 2]             # ... with each seed

    python -m mpirl.sweep count sweep.yaml          # 12 runs: how many array tasks
    python -m mpirl.sweep args sweep.yaml 5         # run 5's trainer options
    python -m mpirl.sweep summarize SWEEP_DIR       # results.md, results.json, curves.png

On Slurm, ``sbatch jobs/sweep.sbatch sweep.yaml`` submits the runs as a job array, each its own
run dir ``run_<index>`` under one sweep dir, and a job that depends on them all and summarises.
"""
from __future__ import annotations

import itertools
import json
import os
import shlex
import statistics
import sys

import yaml

from mpirl.cli import ArgumentParser
from mpirl.config import FIELDS
from mpirl.errors import ConfigError

PROG = "python -m mpirl.sweep"


def read_grid(path: str) -> dict:
    """The sweep file, checked: ``options`` (a mapping), ``grid`` (option: list of values),
    ``seeds`` (a list); option names as the trainer's (``-`` or ``_``)."""
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the sweep file {path}: {exc}") from None
    if not isinstance(data, dict) or set(data) - {"options", "grid", "seeds"}:
        raise ConfigError(f"{path}: a sweep file holds options, grid and seeds (see "
                          f"{PROG} --help)")
    options, grid = data.get("options") or {}, data.get("grid") or {}
    seeds = data.get("seeds", [0])
    problems = [f"{path}: {name!r} is not a trainer option" for name in [*options, *grid]
                if str(name).replace("-", "_") not in FIELDS]
    problems += [f"{path}: grid option {name!r} needs a list of values" for name, values in
                 grid.items() if not isinstance(values, list) or not values]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        problems.append(f"{path}: seeds must be a list of whole numbers")
    if {"seed", "run-dir", "run_dir"} & {str(k) for k in [*options, *grid]}:
        problems.append(f"{path}: seed and run dir are the sweep's to set (use seeds:)")
    if problems:
        raise ConfigError("\n".join(problems))
    return {"options": options, "grid": grid, "seeds": seeds}


def runs(sweep: dict) -> list[dict]:
    """Every run of the sweep, in array order: the grid's combinations, each with every seed."""
    names = list(sweep["grid"])
    combos = list(itertools.product(*(sweep["grid"][n] for n in names))) or [()]
    return [{**sweep["options"], **dict(zip(names, combo)), "seed": seed}
            for combo in combos for seed in sweep["seeds"]]


def trainer_args(options: dict) -> list[str]:
    """``{"learning-rate": 1e-3, "normalize-obs": False}`` -> ``--learning-rate 0.001
    --no-normalize-obs``."""
    args = []
    for name, value in options.items():
        flag = "--" + str(name).replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return args


def summarize(sweep_dir: str) -> dict:
    """The sweep's results: every run's final evaluation, and per configuration the mean and
    std over seeds; written as results.json and results.md, with curves.png (mpirl.plot)."""
    from mpirl.plot import find_runs, group_runs, plot, read_run
    run_dirs = find_runs([sweep_dir])
    if not run_dirs:
        raise ConfigError(f"{sweep_dir} holds no run dirs")
    rows = []
    for label, members in group_runs([read_run(d) for d in run_dirs]).items():
        finals = []
        for run in members:
            try:
                with open(os.path.join(run["dir"], "summary.json")) as fh:
                    value = json.load(fh).get("eval_return_mean")
            except (OSError, ValueError):
                value = None   # a run that failed, or is still going
            finals.append(value)
        done = [v for v in finals if v is not None]
        rows.append({"config": label, "runs": len(members), "finished": len(done),
                     "mean": statistics.fmean(done) if done else None,
                     "std": statistics.pstdev(done) if done else None, "finals": finals,
                     "dirs": [run["dir"] for run in members]})
    result = {"sweep_dir": sweep_dir, "rows": rows}
    with open(os.path.join(sweep_dir, "results.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    lines = ["| configuration | runs | finished | final evaluation, mean ± std |",
             "|---|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: -(r["mean"] if r["mean"] is not None else -1e300)):
        score = "—" if r["mean"] is None else f"{r['mean']:.2f} ± {r['std']:.2f}"
        lines.append(f"| {r['config']} | {r['runs']} | {r['finished']} | {score} |")
    with open(os.path.join(sweep_dir, "results.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    try:
        plot([sweep_dir], out=os.path.join(sweep_dir, "curves.png"))
    except ConfigError as exc:   # nothing logged yet: the table still says what finished
        print(f"{PROG}: no curves: {exc}", file=sys.stderr)
    result["table"] = "\n".join(lines)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("count", help="how many runs the sweep file makes").add_argument("sweep")
    one = sub.add_parser("args", help="the trainer options of run INDEX")
    one.add_argument("sweep")
    one.add_argument("index", type=int)
    sub.add_parser("summarize", help="the table and the plot of a sweep dir").add_argument("dir")
    try:
        args = parser.parse_args(argv)
        if args.command == "summarize":
            print(summarize(args.dir)["table"])
            return 0
        every = runs(read_grid(args.sweep))
        if args.command == "count":
            print(len(every))
        elif not 0 <= args.index < len(every):
            raise ConfigError(f"run {args.index}: the sweep has runs 0 to {len(every) - 1}")
        else:
            print(shlex.join(trainer_args(every[args.index])))
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
