"""Bench section "scaling": PPO throughput at 1, 2, 4 and 8 ranks for every --sync-mode.

    python -m mpirl.bench scaling [--quick] [--out DIR]

Two ways to add ranks (CartPole-v1, the default 64x64 actor-critic, 32 steps per env per rollout):

    weak     fixed work PER RANK: 16 envs on every rank, so a rollout is 512 x N steps;
             ideal: steps/s grows N-fold
    strong   fixed GLOBAL work: 16 envs split over the ranks (16/N each), 512 steps per rollout;
             ideal: the same run finishes N times sooner

Each rank count is one ``mpirun -n N python -m mpirl.bench.scaling --worker`` job that runs the
trainer (``mpirl.train.main``) once per configuration, so the start-up of Python, torch and MPI is
paid once per rank count; the full run repeats every configuration (interleaved) and keeps the
fastest repeat, because the machine may be shared. Figures come from the trainer's own
metrics.jsonl, in steady state (the first updates are left out as warm-up; the timed window holds
a whole number of local-sgd periods):

    sps          global steps / second between the first and the last timed update
    efficiency   sps(N) / (N * sps(1)), against the fastest 1-rank run (1.0 = ideal): at one
                 rank every mode is the same computation, so one baseline serves them all
    comm share   sum of comm_time_s / sum of update_time_s on rank 0: gradient (or parameter)
                 averaging, including the wait for slower ranks, over the whole update
    drift        local-sgd only: mean relative distance of the replicas from their average, just
                 before each averaging

The full run also trains CartPole to its target at 2 ranks with allreduce and with local-sgd
K=8, over several seeds, and compares the steps each needed. Outputs: scaling.json, scaling.md
(written by mpirl.bench) and scaling_{sps,efficiency,comm_share,drift}.png next to them.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile

from mpirl.config import Config

MODES = ("allreduce", "overlap", "local-sgd")
KINDS = ("weak", "strong")
ENVS, STEPS = 16, 32           # weak: envs per rank; strong: envs over all ranks
FULL = dict(ranks=(1, 2, 4, 8), updates=20, warmup=4, sync_every=8, repeats=2, timeout=1500,
            learn_seeds=(0, 1, 2, 3, 4), learn_ranks=2, learn_budget=500_000)
QUICK = dict(ranks=(1, 2), updates=5, warmup=1, sync_every=2, repeats=1, timeout=150)
LEARN_ENVS, LEARN_STEPS = 16, 16   # steps-to-target runs: pinned, so figures stay comparable
BUCKET_MB = 0.005              # ~1300 floats: the 4,675-parameter model travels in 4 buckets
COMMON = ["--env-id", "CartPole-v1", "--num-steps", str(STEPS), "--no-tensorboard",
          "--eval-interval", "100000", "--eval-episodes", "8", "--log-interval", "100000",
          "--checkpoint-interval", "100000", "--bucket-mb", str(BUCKET_MB)]
TARGETS = {"weak_efficiency_2_ranks": 0.90, "comm_share_2_ranks": 0.10,
           "local_sgd_steps_ratio": 1.3}


# -- the job on the ranks ---------------------------------------------------------------------
def allreduce_latency_us(world, numel: int, repeats: int = 200) -> float:
    """Median microseconds of the trainer's gradient average (FlatGradients.average) of ``numel``
    floats with the ranks lined up by a barrier first: the transfer alone, no waiting."""
    import time

    import torch

    from mpirl.comm.collectives import FlatGradients

    grads = FlatGradients([torch.nn.Parameter(torch.zeros(numel))], world)
    times = []
    for _ in range(repeats):
        world.barrier()
        t0 = time.perf_counter()
        grads.average()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def worker(spec_path: str) -> None:
    """Time the bare gradient Allreduce, then run the trainer once per argument list in
    ``spec_path`` (a JSON list), one after another. Rank 0 prints one JSON line."""
    import gymnasium as gym

    from mpirl.comm import World
    from mpirl.models.actor_critic import ActorCritic
    from mpirl.train import main as train_main

    world = World()
    model = ActorCritic(4, gym.spaces.Discrete(2), (64, 64))   # CartPole's default model
    numel = sum(p.numel() for p in model.parameters())
    latency = allreduce_latency_us(world, numel)
    with open(spec_path) as fh:
        for argv in json.load(fh):
            train_main(argv)
    if world.is_root:
        print(json.dumps({"gradient_floats": numel, "allreduce_us": latency}), flush=True)


def _launch(ranks: int, runs: list[list[str]], workdir: str, timeout: float) -> dict:
    """One mpirun job of the worker; returns its JSON line."""
    from mpirl.launch import mpirun  # the launcher with a timeout that kills the whole job

    spec = os.path.join(workdir, f"spec_{ranks}.json")
    with open(spec, "w") as fh:
        json.dump(runs, fh)
    res = mpirun(ranks, ["-m", "mpirl.bench.scaling", "--worker", spec], timeout=timeout).check()
    return json.loads([line for line in res.output.splitlines() if line.startswith("{")][-1])


# -- reading a run ------------------------------------------------------------------------------
def _metrics(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def steady_state(run_dir: str, warmup: int) -> dict:
    """Throughput and communication share of one run, leaving out the first ``warmup`` updates."""
    records = _metrics(run_dir)
    first, timed = records[warmup - 1], records[warmup:]
    last = timed[-1]
    seconds = last["time_s"] - first["time_s"]
    update_s = sum(r["update_time_s"] for r in timed)
    drift = [(r["update"], r["drift"]) for r in records if "drift" in r]
    return {"global_steps": last["global_step"], "updates_timed": len(timed),
            "sps": (last["global_step"] - first["global_step"]) / seconds,
            "update_time_s": update_s / len(timed),
            "comm_time_s": sum(r["comm_time_s"] for r in timed) / len(timed),
            "comm_share": sum(r["comm_time_s"] for r in timed) / update_s,
            "drift": drift, "drift_mean": statistics.fmean(d for _, d in drift) if drift else None}


# -- the benchmark ------------------------------------------------------------------------------
def _train_args(mode: str, kind: str, ranks: int, size: dict, run_dir: str) -> list[str]:
    envs = ENVS if kind == "weak" else ENVS // ranks
    total = size["updates"] * STEPS * ENVS * (ranks if kind == "weak" else 1)
    return [*COMMON, "--sync-mode", mode, "--sync-every", str(size["sync_every"]),
            "--num-envs", str(envs), "--total-timesteps", str(total), "--run-dir", run_dir]


def measure_scaling(size: dict, workdir: str) -> tuple[list[dict], list[dict]]:
    """One row per (kind, mode, ranks), the fastest of ``repeats`` runs (at 1 rank weak and
    strong are the same run); and per rank count the bare Allreduce time of the gradient."""
    rows, latency = [], []
    for ranks in size["ranks"]:
        kinds = KINDS[:1] if ranks == 1 else KINDS
        plan = [(k, m, os.path.join(workdir, f"{k}_{m}_{ranks}_{i}"))
                for i in range(size["repeats"]) for k in kinds for m in MODES]
        job = _launch(ranks, [_train_args(m, k, ranks, size, d) for k, m, d in plan],
                      workdir, size["timeout"])
        latency.append({"ranks": ranks, **job})
        for kind in KINDS:
            for mode in MODES:
                figures = max((steady_state(d, size["warmup"]) for k, m, d in plan
                               if (k, m) == ("weak" if ranks == 1 else kind, mode)),
                              key=lambda f: f["sps"])
                rows.append({"scaling": kind, "mode": mode, "ranks": ranks,
                             "envs_per_rank": ENVS if kind == "weak" else ENVS // ranks,
                             "oversubscribed": ranks > (os.cpu_count() or 1), **figures})
    add_efficiency(rows)
    return rows, latency


def add_efficiency(rows: list[dict]) -> None:
    """Speed-up and efficiency against ONE baseline: the fastest 1-rank run. At one rank every
    mode is the same computation (nothing to average), so their spread is the machine's noise."""
    base = max(r["sps"] for r in rows if r["ranks"] == 1)
    for row in rows:
        row["speedup"] = row["sps"] / base
        row["efficiency"] = row["speedup"] / row["ranks"]


def measure_learning(size: dict, workdir: str) -> dict:
    """Steps to the CartPole target with allreduce and with local-sgd K=8, same seeds."""
    ranks, runs, plan = size["learn_ranks"], [], []
    for seed in size["learn_seeds"]:
        for mode in ("allreduce", "local-sgd"):
            run_dir = os.path.join(workdir, f"learn_{mode}_{seed}")
            plan.append((mode, seed, run_dir))
            # evaluations every K=8 updates fall right after local-sgd's averagings, so they
            # judge the averaged model (between averagings each rank would run its own replica)
            runs.append(["--env-id", "CartPole-v1", "--sync-mode", mode, "--sync-every", "8",
                         "--num-envs", str(LEARN_ENVS), "--num-steps", str(LEARN_STEPS),
                         "--eval-interval", "8", "--seed", str(seed),
                         "--total-timesteps", str(size["learn_budget"]), "--stop-on-solve",
                         "--no-tensorboard", "--log-interval", "100000", "--run-dir", run_dir])
    _launch(ranks, runs, workdir, size["timeout"])
    steps: dict = {"allreduce": [], "local-sgd": []}
    for mode, seed, run_dir in plan:
        with open(os.path.join(run_dir, "summary.json")) as fh:
            steps[mode].append(json.load(fh)["solved_at_step"])
    median = {mode: _median_steps(s) for mode, s in steps.items()}
    both = None not in median.values()
    return {"ranks": ranks, "sync_every": 8, "num_envs": LEARN_ENVS, "num_steps": LEARN_STEPS,
            "seeds": list(size["learn_seeds"]),
            "budget": size["learn_budget"], "solved_at_step": steps, "median_steps": median,
            "ratio": median["local-sgd"] / median["allreduce"] if both else None}


def _median_steps(steps: list) -> float | None:
    """Median steps to the target, an unsolved seed counting as infinitely many; None if that
    median is infinite (most seeds unsolved)."""
    middle = statistics.median([float("inf") if s is None else s for s in steps])
    return None if middle == float("inf") else middle


def run(args) -> dict:
    size = dict(QUICK if args.quick else FULL)
    if os.environ.get("MPIRL_BENCH_RANKS"):   # e.g. 1,2,4,8,16 on a machine with 16 cores
        size["ranks"] = tuple(int(n) for n in os.environ["MPIRL_BENCH_RANKS"].split(","))
    load_before = os.getloadavg()[0]   # other work on the machine skews every figure: say so
    with tempfile.TemporaryDirectory(prefix="mpirl-scaling-") as workdir:
        rows, latency = measure_scaling(size, workdir)
        learning = None if args.quick else measure_learning(size, workdir)
    load = {"before": load_before, "after": os.getloadavg()[0]}
    defaults = Config()
    per_update = defaults.update_epochs * defaults.num_minibatches   # gradient averages
    for entry in latency:   # what the bare transfers would cost of a weak allreduce update
        update_s = next(r["update_time_s"] for r in rows if (r["scaling"], r["mode"], r["ranks"])
                        == ("weak", "allreduce", entry["ranks"]))
        entry["allreduces_per_update"] = per_update
        entry["transfer_share"] = per_update * entry["allreduce_us"] * 1e-6 / update_s
    plots = plot(rows, args.out)
    return {"ranks": list(size["ranks"]), "modes": list(MODES), "kinds": list(KINDS),
            "setup": {"env_id": "CartPole-v1", "num_steps": STEPS, "envs": ENVS,
                      "updates": size["updates"], "warmup_updates": size["warmup"],
                      "sync_every": size["sync_every"], "bucket_mb": BUCKET_MB,
                      "repeats": size["repeats"], "cores": os.cpu_count(),
                      "load_average_1min": load},
            "rows": rows, "allreduce_latency": latency, "learning": learning,
            "targets": TARGETS, "met": verdicts(rows, latency, learning), "plots": plots}


def verdicts(rows: list[dict], latency: list[dict], learning: dict | None) -> dict:
    """Each target met (True/False), or None where this run did not measure it."""
    at2 = next((r for r in rows if (r["scaling"], r["mode"], r["ranks"])
                == ("weak", "allreduce", 2)), None)
    transfer = next((e["transfer_share"] for e in latency if e["ranks"] == 2), None)
    ratio = learning["ratio"] if learning else None
    return {"weak_efficiency_2_ranks":
            None if at2 is None else at2["efficiency"] >= TARGETS["weak_efficiency_2_ranks"],
            "comm_share_2_ranks":
            None if at2 is None else at2["comm_share"] < TARGETS["comm_share_2_ranks"],
            "transfer_share_2_ranks":
            None if transfer is None else transfer < TARGETS["comm_share_2_ranks"],
            "local_sgd_steps_ratio":
            None if ratio is None else ratio <= TARGETS["local_sgd_steps_ratio"]}


# -- outputs ------------------------------------------------------------------------------------
def plot(rows: list[dict], out: str) -> list[str]:
    """Four PNGs: steps/s, efficiency and communication share against ranks; local-sgd drift."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = sorted({r["ranks"] for r in rows})
    cores = os.cpu_count() or 1
    paths = []
    for key, label, ideal in (("sps", "global steps / s", "sps"),
                              ("efficiency", "parallel efficiency", 1.0),
                              ("comm_share", "communication share of update time", None)):
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, mode in enumerate(MODES):
            for kind, style in zip(KINDS, ("-", "--")):
                line = [r for r in rows if r["mode"] == mode and r["scaling"] == kind]
                ax.plot([r["ranks"] for r in line], [r[key] for r in line], style, marker="o",
                        color=f"C{i}", label=f"{mode}, {kind}")
        if ideal == "sps":
            base = max(r["sps"] for r in rows if r["ranks"] == 1)
            ax.plot(ranks, [base * n for n in ranks], ":", color="gray", label="ideal")
        elif ideal is not None:
            ax.axhline(ideal, linestyle=":", color="gray", label="ideal")
        if ranks[-1] > cores:
            ax.axvline(cores, color="red", alpha=0.3, label=f"{cores} cores")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(n) for n in ranks])
        ax.set_xlabel("MPI ranks")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        ax.set_title(f"PPO CartPole-v1: {label}")
        fig.tight_layout()
        paths.append(_save(fig, out, f"scaling_{key}.png"))
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r["mode"] == "local-sgd" and r["scaling"] == "weak" and r["drift"]:
            ax.plot(*zip(*r["drift"]), marker="o", label=f"{r['ranks']} ranks")
    ax.set_xlabel("update (drift measured just before averaging)")
    ax.set_ylabel("mean relative distance from the average")
    ax.set_title("local-sgd replica drift (weak scaling)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(_save(fig, out, "scaling_drift.png"))
    plt.close(fig)
    return paths


def _save(fig, out: str, name: str) -> str:
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    return path


def table(result: dict) -> str:
    s, machine = result["setup"], result.get("machine", {})
    lines = [f"PPO on CartPole-v1, {s['num_steps']} steps per env per rollout; weak scaling: "
             f"{s['envs']} envs per rank; strong scaling: {s['envs']} envs over all ranks. "
             f"{s['updates']} updates per run, the first {s['warmup_updates']} left out, best of "
             f"{s['repeats']}; local-sgd K={s['sync_every']}; overlap buckets of "
             f"{s['bucket_mb']} MiB. Machine: {machine.get('cpu', '?')}, "
             f"{machine.get('cores', '?')} cores, 1-minute load average "
             f"{s['load_average_1min']['before']:.1f} before and "
             f"{s['load_average_1min']['after']:.1f} after (other work on the machine)"
             + (" (quick run: tiny budget, not a measurement)" if result.get("quick") else "")
             + ".", "",
             "| scaling | mode | ranks | envs/rank | steps/s | speed-up | efficiency "
             "| comm share | drift |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        note = " (oversubscribed)" if r["oversubscribed"] else ""
        drift = f"{r['drift_mean']:.2e}" if r["drift_mean"] is not None else "-"
        lines.append(f"| {r['scaling']} | {r['mode']} | {r['ranks']}{note} | {r['envs_per_rank']} "
                     f"| {r['sps']:,.0f} | {r['speedup']:.2f}x | {r['efficiency']:.0%} "
                     f"| {r['comm_share']:.1%} | {drift} |")
    latency = result.get("allreduce_latency") or []
    if latency:
        lines += ["", f"The bare gradient average ({latency[0]['gradient_floats']:,} floats, ranks "
                      "lined up by a barrier first, median of 200) and what "
                      f"{latency[0]['allreduces_per_update']} of them (one per minibatch) would be "
                      "of a weak-scaling allreduce update; the rest of the measured communication "
                      "share is waiting for the other ranks:", "",
                  "| ranks | Allreduce | share of the update |", "|---:|---:|---:|"]
        lines += [f"| {e['ranks']} | {e['allreduce_us']:.1f} us | {e['transfer_share']:.2%} |"
                  for e in latency]
    learning = result.get("learning")
    if learning:
        lines += ["", f"Steps to the CartPole-v1 target at {learning['ranks']} ranks, "
                      f"{learning['num_envs']} envs x {learning['num_steps']} "
                      f"steps per rank per update (seeds {learning['seeds']}, median; None = "
                      "not solved in "
                      f"{learning['budget']:,} steps):", "",
                  "| mode | steps per seed | median |", "|---|---|---:|"]
        for mode, steps in learning["solved_at_step"].items():
            median = learning["median_steps"][mode]
            lines.append(f"| {mode}{' K=8' if mode == 'local-sgd' else ''} | {steps} "
                         f"| {'unsolved' if median is None else f'{median:,.0f}'} |")
        if learning["ratio"] is not None:
            lines.append(f"\nlocal-sgd / allreduce: {learning['ratio']:.2f}x the steps")
    t, met = result["targets"], result["met"]

    def verdict(key):
        return {True: "met", False: "NOT met", None: "not measured"}[met[key]]

    lines += ["", f"Targets: weak-scaling efficiency 1 -> 2 ranks >= {t['weak_efficiency_2_ranks']:.0%} "
                  f"({verdict('weak_efficiency_2_ranks')}); communication < "
                  f"{t['comm_share_2_ranks']:.0%} of update time at 2 ranks: as measured, waits "
                  f"included ({verdict('comm_share_2_ranks')}), the transfers alone "
                  f"({verdict('transfer_share_2_ranks')}); local-sgd K=8 within "
                  f"{t['local_sgd_steps_ratio']}x the steps of allreduce "
                  f"({verdict('local_sgd_steps_ratio')})."]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
    else:
        sys.exit("usage: python -m mpirl.bench scaling   (this module's own entry is the worker)")
