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

def read_point(rank_dir: str) -> dict:
    """One rank count's figures from its run directory.

    steps/s is the trainer's own (training only); without it, global steps over the launch's
    wall clock, start-up included.
    """
    with open(os.path.join(rank_dir, "summary.json")) as fh:
        summary = json.load(fh)
    with open(os.path.join(rank_dir, "launch_seconds")) as fh:
        launch_seconds = float(fh.read())
    steps = int(summary["global_steps"])
    sps = summary.get("sps") or steps / launch_seconds
    return {"ranks": int(summary["n_ranks"]), "global_steps": steps, "sps": round(float(sps), 1),
            "train_seconds": round(summary.get("wall_time_s", launch_seconds), 2),
            "launch_seconds": round(launch_seconds, 2)}


def collect(run_dir: str) -> list[dict]:
    dirs = [d for d in glob.glob(os.path.join(run_dir, "ranks_*")) if re.search(r"ranks_\d+$", d)]
    points = sorted((read_point(d) for d in dirs), key=lambda p: p["ranks"])
    base = next((p for p in points if p["ranks"] == 1), None)
    for p in points:
        p["speedup"] = round(p["sps"] / base["sps"], 3) if base else None
        p["efficiency"] = round(p["sps"] / (p["ranks"] * base["sps"]), 3) if base else None
    return points


def table(points: list[dict]) -> str:
    lines = ["| ranks | global steps | training s | launch s | steps/s | speed-up | efficiency |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        lines.append(f"| {p['ranks']} | {p['global_steps']} | {p['train_seconds']} | "
                     f"{p['launch_seconds']} | {p['sps']} | {p['speedup']} | {p['efficiency']} |")
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
