"""Summarise a jobs/scaling.sbatch run: steps/second and parallel efficiency per rank count.

    python jobs/scaling_report.py RUN_DIR

reads RUN_DIR/ranks_<N>/summary.json (written by the trainer) for every N that ran and writes
RUN_DIR/scaling.json, scaling.md (a markdown table) and scaling.png (steps/s against ranks, with
the ideal linear line). Efficiency at N ranks = sps(N) / (N * sps(1)): 1.0 is perfect scaling.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys

# Timing fields the trainer may report, most specific first; else the job's own wall clock.
TIME_FIELDS = ("train_seconds", "wall_seconds", "seconds", "elapsed_seconds", "time_seconds")


def read_point(rank_dir: str) -> dict:
    """One rank count's figures from its run directory."""
    with open(os.path.join(rank_dir, "summary.json")) as fh:
        summary = json.load(fh)
    seconds, source = None, None
    for name in TIME_FIELDS:
        if isinstance(summary.get(name), (int, float)) and summary[name] > 0:
            seconds, source = float(summary[name]), name
            break
    if seconds is None:
        with open(os.path.join(rank_dir, "launch_seconds")) as fh:
            seconds, source = float(fh.read()), "launch wall clock (start-up included)"
    steps = int(summary["global_steps"])
    sps = summary.get("sps") or summary.get("steps_per_second") or steps / seconds
    return {"ranks": int(summary["n_ranks"]), "global_steps": steps, "seconds": round(seconds, 3),
            "sps": round(float(sps), 1), "timing": source}


def collect(run_dir: str) -> list[dict]:
    dirs = [d for d in glob.glob(os.path.join(run_dir, "ranks_*")) if re.search(r"ranks_\d+$", d)]
    points = sorted((read_point(d) for d in dirs), key=lambda p: p["ranks"])
    base = next((p for p in points if p["ranks"] == 1), None)
    for p in points:
        p["speedup"] = round(p["sps"] / base["sps"], 3) if base else None
        p["efficiency"] = round(p["sps"] / (p["ranks"] * base["sps"]), 3) if base else None
    return points


def table(points: list[dict]) -> str:
    lines = ["| ranks | global steps | seconds | steps/s | speed-up | efficiency |",
             "|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        lines.append(f"| {p['ranks']} | {p['global_steps']} | {p['seconds']} | {p['sps']} | "
                     f"{p['speedup']} | {p['efficiency']} |")
    return "\n".join(lines)


def plot(points: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = [p["ranks"] for p in points]
    sps = [p["sps"] for p in points]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ranks, sps, "o-", label="measured")
    base = next((p["sps"] for p in points if p["ranks"] == 1), None)
    if base:
        ax.plot(ranks, [base * r for r in ranks], "--", color="grey", label="ideal (linear)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.set_xlabel("MPI ranks")
    ax.set_ylabel("environment steps / second")
    ax.set_title("mpirl rank scaling")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(run_dir: str) -> int:
    points = collect(run_dir)
    if not points:
        print(f"no ranks_<N>/summary.json under {run_dir}", file=sys.stderr)
        return 1
    with open(os.path.join(run_dir, "scaling.json"), "w") as fh:
        json.dump({"points": points, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}, fh, indent=2)
    text = table(points)
    with open(os.path.join(run_dir, "scaling.md"), "w") as fh:
        fh.write(text + "\n")
    plot(points, os.path.join(run_dir, "scaling.png"))
    print(text)
    print(f"wrote {run_dir}/scaling.json, scaling.md, scaling.png")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
