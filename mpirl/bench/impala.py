"""Bench section "impala": asynchronous actors and learners (--algo impala) next to sync PPO.

* solve: CartPole-v1 at 3 ranks (IMPALA: 1 learner, 2 actors), steps and seconds to the first
  evaluation >= 475, next to synchronous data-parallel PPO at 3 ranks, both with their defaults;
* straggler: at 4 ranks, total steps/s of sync PPO and of IMPALA (1 learner, 3 actors) over a
  fixed budget, with and without one rank slowed on purpose (MPIRL_FAULT=slow@3:MS: rank 3
  sleeps at every step of its vector env), all in one run; IMPALA's policy-lag distribution;
* utilisation: the learner's share of time spent learning rather than waiting for blocks, when
  the actors are faster than the learner (a wide network, wide actor batches);
* parameters: what the stream of parameters costs the learner per version and how soon an
  actor has a version, for CartPole's network and the Nature CNN's 1.7M parameters, next to a
  broadcast of the same vector, for which every actor stops (mpirl.bench.stream_worker).
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

from mpirl.launch import mpirun, train_summary

SLOW_MS = 10   # the straggler's sleep per env step: ~50x a CartPole vector step with its policy


def _train(nprocs: int, args: list[str], env: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = train_summary(nprocs, [*args, "--no-tensorboard", "--run-dir",
                                         os.path.join(tmp, "run")], env=env)
        summary["process_wall_s"] = time.perf_counter() - t0
        with open(os.path.join(tmp, "run", "metrics.jsonl")) as fh:
            rows = [json.loads(line) for line in fh]
    summary["utilisation"] = [r["learner_utilisation"] for r in rows if "learner_utilisation" in r]
    return summary


def _solve(algo: str, seed: int, budget: int) -> dict:
    s = _train(3, ["--algo", algo, "--env-id", "CartPole-v1", "--total-timesteps", str(budget),
                   "--seed", str(seed), "--stop-on-solve"])
    return {k: s.get(k) for k in ("seed", "solved_at_step", "solved_at_time_s", "process_wall_s",
                                  "eval_return_mean")}


def _straggler(algo: str, budget: int, slow: bool) -> dict:
    env = {"MPIRL_FAULT": f"slow@3:{SLOW_MS}"} if slow else None
    s = _train(4, ["--algo", algo, "--env-id", "CartPole-v1", "--total-timesteps", str(budget),
                   "--eval-interval", "100000"], env=env)
    out = {"sps": s["sps"], "wall_time_s": s["wall_time_s"]}
    if algo == "impala":
        out["policy_lag_histogram"] = s["policy_lag_histogram"]
        out["blocks_from_actor"] = s["blocks_from_actor"]
    return out


def _parameter_stream(n_params: int, versions: int) -> dict:
    out = mpirun(3, ["-m", "mpirl.bench.stream_worker", str(n_params), str(versions), "5"],
                 timeout=300).check()
    return json.loads(out.output.strip().splitlines()[-1])


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def lag_percentiles(histogram: list[int]) -> dict:
    """Median, 90th percentile and max of a lag histogram (bin k: lag k; the last bin of the
    trainer's histogram, LAG_BINS - 1, counts that lag or more)."""
    total = sum(histogram)
    out, seen = {}, 0
    for lag, count in enumerate(histogram):
        seen += count
        for name, q in (("p50", 0.5), ("p90", 0.9)):
            if name not in out and seen >= q * total:
                out[name] = lag
        if count:
            out["max"] = lag
    return out


def run(args) -> dict:
    seeds = [0] if args.quick else [0, 1, 2]
    solve_budget = 100_000 if args.quick else 1_000_000
    result: dict = {"solve": {}, "straggler": {}, "slow_ms": SLOW_MS}
    for algo in ("impala", "ppo"):
        runs = [_solve(algo, s, solve_budget) for s in seeds]
        solved = [r for r in runs if r["solved_at_step"] is not None]
        result["solve"][algo] = {
            "seeds": seeds, "solved": len(solved), "runs": runs,
            "solved_at_step_median": _median([r["solved_at_step"] for r in solved]),
            "solved_at_time_s_median": _median([r["solved_at_time_s"] for r in solved])}
    budget = 10_000 if args.quick else 100_000
    for algo in ("ppo", "impala"):
        result["straggler"][algo] = {"even": _straggler(algo, budget, False),
                                     "slow": _straggler(algo, budget, True)}
        even, slow = result["straggler"][algo]["even"], result["straggler"][algo]["slow"]
        result["straggler"][algo]["throughput_lost"] = 1.0 - slow["sps"] / even["sps"]
    for case in ("even", "slow"):
        lag = result["straggler"]["impala"][case]
        lag["lag"] = lag_percentiles(lag["policy_lag_histogram"])
    # the target: IMPALA loses under 25% of its throughput to the slow rank
    result["straggler"]["met"] = result["straggler"]["impala"]["throughput_lost"] < 0.25
    u = _train(3, ["--algo", "impala", "--env-id", "CartPole-v1", "--hidden-sizes", "512,512",
                   "--num-envs", "32", "--total-timesteps", str(40_000 if args.quick else 200_000),
                   "--eval-interval", "100000"])
    steady = u["utilisation"][len(u["utilisation"]) // 10:]   # after the start-up updates
    result["utilisation"] = {"mean": statistics.fmean(steady), "min": min(steady),
                             "sps": u["sps"], "updates": len(u["utilisation"])}
    result["utilisation"]["met"] = result["utilisation"]["mean"] >= 0.9   # the target: 90%
    result["parameters"] = [_parameter_stream(n, 10 if args.quick else 100)
                            for n in (4_610, 1_700_000)]   # CartPole's actor-critic; Nature CNN
    return result


def table(result: dict) -> str:
    lines = ["| CartPole-v1, 3 ranks | solved (seeds) | steps to solve (median) | "
             "time to solve (s, median) |", "|---|---|---|---|"]
    names = {"impala": "IMPALA (1 learner, 2 actors)", "ppo": "sync PPO"}
    for algo, s in result["solve"].items():
        step = f"{s['solved_at_step_median']:,.0f}" if s["solved_at_step_median"] else "-"
        secs = f"{s['solved_at_time_s_median']:.1f}" if s["solved_at_time_s_median"] else "-"
        lines.append(f"| {names[algo]} | {s['solved']}/{len(s['seeds'])} | {step} | {secs} |")
    lines += ["", f"| 4 ranks, CartPole-v1; rank 3 sleeps {result['slow_ms']} ms a step | "
                  "steps/s, even | steps/s, one slow rank | throughput lost | "
                  "policy lag (median / p90 / max), even -> slow |", "|---|---|---|---|---|"]
    for algo in ("ppo", "impala"):
        s = result["straggler"][algo]
        lag = "-"
        if algo == "impala":
            e, w = s["even"]["lag"], s["slow"]["lag"]
            lag = (f"{e.get('p50')} / {e.get('p90')} / {e.get('max')} -> "
                   f"{w.get('p50')} / {w.get('p90')} / {w.get('max')}")
        name = "sync PPO (4 ranks)" if algo == "ppo" else "IMPALA (1 learner, 3 actors)"
        lines.append(f"| {name} | {s['even']['sps']:,.0f} | {s['slow']['sps']:,.0f} | "
                     f"{s['throughput_lost']:.0%} | {lag} |")
    lines.append(f"\nTarget: IMPALA loses under 25% of its throughput to the slow rank: "
                 f"{'met' if result['straggler']['met'] else 'NOT met'}.")
    u = result["utilisation"]
    lines += ["", "| learner utilisation, actors faster than the learner (3 ranks, 512x512, "
                  "32 envs per actor) | value |", "|---|---|",
              f"| mean over updates (first tenth left out) | {u['mean']:.1%} |",
              f"| lowest update | {u['min']:.1%} |",
              f"\nTarget: at least 90%: {'met' if u['met'] else 'NOT met'}."]
    lines += ["", "| parameters to 2 actors, a version every 5 ms of learning | floats | "
                  "learner's cost per version (µs) | sent -> loaded by an actor (ms) | "
                  "actor's copy (µs) | a broadcast instead: every actor stopped (µs) |",
              "|---|---|---|---|---|---|"]
    for p in result["parameters"]:
        lines.append(f"| stream (mpirl.comm.stream) | {p['n_params']:,} | "
                     f"{p['learner_publish_us']:.0f} | {p['delivery_ms']:.2f} | "
                     f"{p['actor_load_us']:.0f} | {p['bcast_actor_blocked_us']:.0f} |")
    return "\n".join(lines)
