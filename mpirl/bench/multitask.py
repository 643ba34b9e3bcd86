"""Bench section "multitask": CartPole-v1 and Acrobot-v1 learned together vs. each alone.

Three runs of the trainer, each at 4 ranks with the same PPO settings and --stop-on-solve:

    joint      --tasks CartPole-v1,Acrobot-v1 (2 ranks per task), budget 2 x STEPS global steps,
               --park-solved-tasks
    alone      --tasks CartPole-v1, then --tasks Acrobot-v1, each with a budget of STEPS

so every task gets at most the same number of environment steps in the joint run as alone, and
the runs alone use the same model, PopArt and settings: only the sharing differs. The joint run
parks a task once its evaluation reaches the target (its ranks stop collecting and training and
wait without spinning; see mpirl.tasks): that is the joint analogue of a run alone, which
ends at its own solve with --stop-on-solve. Without it the joint run would keep stepping and
training a solved task, on the same oversubscribed cores, for as long as the other learns; that
run is made too, as a reference (``joint_unparked``), not judged by the target. (The plain
single-task trainer, without PopArt, solved neither task within this budget with these
settings in one run on the 2-core development VM, seed 1; our guess, not verified: its value
loss, in return units of ~100, swamps the clipped gradient.)
The targets: both tasks reach their own target (475, -100) in the joint run, and the joint run's
wall-clock time is no more than the two separate runs' added together (wall time is that of
the trainer's own clock, start-up of mpirun and imports excluded, the same for all three).

The PPO settings are one set for both tasks (the trainer's defaults are tuned for CartPole
alone; with them Acrobot's policy collapsed to a near-deterministic one scoring -500 in our
trial): a smaller learning rate, an entropy bonus, longer rollouts, gamma 0.99 / lambda 0.95.

``--dqn`` (an optional extra, written as multitask-dqn.json / .md; the PPO figures are not
touched): the same comparison with ``--algo dqn`` (allgather replay, DQN's CartPole settings of
mpirl.bench.dqn for both tasks, --task-weighting equal), at most DQN_STEPS steps per task. DQN
has no parking, so the joint run trains both tasks until both are solved (--stop-on-solve); no
target is judged, the figures are reported as they come.
"""
from __future__ import annotations

import os
import tempfile

from mpirl.launch import train_summary

RANKS = 4
STEPS = 150_000          # per task (the joint run gets twice this many global steps)
QUICK_STEPS = 8_192
PPO = ["--learning-rate", "1e-3", "--ent-coef", "0.01", "--gamma", "0.99", "--gae-lambda", "0.95",
       "--num-envs", "8", "--num-steps", "64", "--update-epochs", "4", "--num-minibatches", "4",
       "--eval-interval", "5", "--log-interval", "1000", "--no-tensorboard", "--stop-on-solve"]
TASKS = ("CartPole-v1", "Acrobot-v1")


JOINT = ["--park-solved-tasks"]


DQN_STEPS = 100_000      # per task
DQN_QUICK_STEPS = 4_096


def _dqn_settings() -> list[str]:
    from mpirl.bench.dqn import CARTPOLE_ARGS
    return ["--algo", "dqn", *CARTPOLE_ARGS, "--eval-interval", "10", "--eval-episodes", "10",
            "--log-interval", "100000", "--checkpoint-interval", "100000", "--no-tensorboard",
            "--stop-on-solve"]


def _train(args: list[str], budget: int, seed: int, settings: list[str] = PPO) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return train_summary(RANKS, [*args, *settings, "--total-timesteps", str(budget),
                                     "--seed", str(seed), "--run-dir", os.path.join(tmp, "run")],
                             timeout=1800)


def output_name(args) -> str:
    """The stem of the files this section writes (the DQN extra beside the PPO figures)."""
    return "multitask-dqn" if getattr(args, "dqn", False) else "multitask"


def run_dqn(args) -> dict:
    """The joint DQN run against each task alone (see the module docstring)."""
    steps = DQN_QUICK_STEPS if args.quick else DQN_STEPS
    seed = 1 if getattr(args, "seed", None) is None else args.seed
    settings = _dqn_settings()
    loads = [os.getloadavg()[0]]
    joint = _train(["--tasks", ",".join(TASKS)], 2 * steps, seed, settings)
    alone = {}
    for task in TASKS:
        loads.append(os.getloadavg()[0])
        alone[task] = _train(["--tasks", task], steps, seed, settings)
    loads.append(os.getloadavg()[0])
    rows = []
    for task in TASKS:
        mine, single = joint["tasks"][task], alone[task]["tasks"][task]
        rows.append({"task": task, "target": mine["target_return"],
                     "joint_solved": mine["solved"], "joint_eval": mine["eval_return_mean"],
                     "joint_solved_at_task_step": (None if mine["solved_at_step"] is None
                                                   else mine["solved_at_step"] // len(TASKS)),
                     "joint_solved_at_s": mine["solved_at_time_s"],
                     "alone_solved": single["solved"], "alone_eval": single["eval_return_mean"],
                     "alone_solved_at_step": single["solved_at_step"],
                     "alone_solved_at_s": single["solved_at_time_s"],
                     "alone_wall_s": alone[task]["wall_time_s"],
                     "alone_sps": alone[task]["sps"]})
    alone_total = sum(s["wall_time_s"] for s in alone.values())
    return {"algo": "dqn", "ranks": RANKS, "steps_per_task": steps, "seed": seed,
            "dqn_args": settings, "load_average": loads, "rows": rows,
            "joint_wall_s": joint["wall_time_s"], "joint_global_steps": joint["global_steps"],
            "joint_sps": joint["sps"], "joint_gradient_steps": joint["gradient_steps"],
            "alone_wall_s_total": alone_total,
            "alone_global_steps": {t: s["global_steps"] for t, s in alone.items()},
            "both_solved_in_joint_run": all(r["joint_solved"] for r in rows),
            "joint_not_slower": joint["wall_time_s"] <= alone_total}


def table_dqn(result: dict) -> str:
    lines = [f"Multi-task DQN at {result['ranks']} ranks ({result['machine']['cpu']}, "
             f"{result['machine']['cores']} cores), at most {result['steps_per_task']:,} steps "
             f"per task, --stop-on-solve, allgather replay, seed {result['seed']}"
             + (" (quick: budgets too small to solve)" if result.get("quick") else ""), "",
             *_task_table(result["rows"], [("alone: solved at s", "alone_solved_at_s", "{:.1f}")])]
    lines += ["", "| wall time | joint run | two runs alone, added |", "|---|---:|---:|",
              f"| seconds | {result['joint_wall_s']:.1f} | {result['alone_wall_s_total']:.1f} |",
              "", f"Both tasks solved in the joint run: {result['both_solved_in_joint_run']}; "
              f"joint no slower than the two alone: {result['joint_not_slower']}. "
              f"Joint run: {result['joint_global_steps']:,} global steps at "
              f"{result['joint_sps']:,.0f} steps/s, {result['joint_gradient_steps']:,} gradient "
              "steps."]
    if result.get("load_average"):
        lines.append("Load average (1 min) before the runs (joint, alone, alone, after): "
                     + ", ".join(f"{x:.1f}" for x in result["load_average"]) + ".")
    return "\n".join(lines)


def run(args) -> dict:
    if getattr(args, "dqn", False):
        return run_dqn(args)
    steps = QUICK_STEPS if args.quick else STEPS
    seed = 1 if getattr(args, "seed", None) is None else args.seed
    loads = [os.getloadavg()[0]]  # other jobs on the machine distort every wall-clock figure
    joint = _train(["--tasks", ",".join(TASKS), *JOINT], 2 * steps, seed)
    alone = {}
    for task in TASKS:
        loads.append(os.getloadavg()[0])
        alone[task] = _train(["--tasks", task], steps, seed)
    loads.append(os.getloadavg()[0])
    unparked = _train(["--tasks", ",".join(TASKS)], 2 * steps, seed)
    rows = []
    for task in TASKS:
        mine, single = joint["tasks"][task], alone[task]
        rows.append({"task": task, "target": mine["target_return"],
                     "joint_solved": mine["solved"], "joint_eval": mine["eval_return_mean"],
                     "joint_solved_at_task_step": (None if mine["solved_at_step"] is None
                                                   else mine["solved_at_step"] // len(TASKS)),
                     "joint_solved_at_s": mine["solved_at_time_s"],
                     "joint_env_steps": mine.get("env_steps"),
                     "joint_parked_at_task_step": [s // len(TASKS)
                                                   for s in mine.get("parked_at_steps", [])],
                     "joint_resumed_at_task_step": [s // len(TASKS)
                                                    for s in mine.get("resumed_at_steps", [])],
                     "unparked_solved_at_task_step": (
                         None if unparked["tasks"][task]["solved_at_step"] is None
                         else unparked["tasks"][task]["solved_at_step"] // len(TASKS)),
                     "alone_solved": single["tasks"][task]["solved"],
                     "alone_eval": single["tasks"][task]["eval_return_mean"],
                     "alone_solved_at_step": single["solved_at_step"],
                     "alone_wall_s": single["wall_time_s"]})
    alone_total = sum(s["wall_time_s"] for s in alone.values())
    both_solved = all(r["joint_solved"] for r in rows)
    return {"ranks": RANKS, "steps_per_task": steps, "seed": seed, "ppo_args": PPO,
            "joint_args": JOINT, "load_average": loads, "rows": rows,
            "joint_wall_s": joint["wall_time_s"], "joint_global_steps": joint["global_steps"],
            "alone_wall_s_total": alone_total,
            "joint_unparked": {"wall_s": unparked["wall_time_s"],
                               "global_steps": unparked["global_steps"],
                               "both_solved": all(t["solved"]
                                                  for t in unparked["tasks"].values())},
            "alone_global_steps": {t: s["global_steps"] for t, s in alone.items()},
            "both_solved_in_joint_run": both_solved,
            "joint_not_slower": joint["wall_time_s"] <= alone_total,
            "target_met": both_solved and joint["wall_time_s"] <= alone_total}


def _fmt(value, spec="{:.0f}"):
    return "-" if value is None else spec.format(value)


# (header, row key, format) of the per-task columns both algorithms report
_TASK_COLUMNS = [("target", "target", "{:.0f}"), ("joint: eval", "joint_eval", "{:.1f}"),
                 ("joint: solved at step (per task)", "joint_solved_at_task_step", "{:,}"),
                 ("joint: solved at s", "joint_solved_at_s", "{:.1f}"),
                 ("alone: eval", "alone_eval", "{:.1f}"),
                 ("alone: solved at step", "alone_solved_at_step", "{:,}")]


def _task_table(rows: list[dict], extra: list[tuple]) -> list[str]:
    """The per-task markdown table: the shared columns, ``extra`` ones, then the wall time alone."""
    columns = _TASK_COLUMNS + extra + [("alone: wall s", "alone_wall_s", "{:.1f}")]
    lines = ["| task | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for r in rows:
        lines.append(f"| {r['task']} | "
                     + " | ".join(_fmt(r.get(key), spec) for _, key, spec in columns) + " |")
    return lines


def table(result: dict) -> str:
    if result.get("algo") == "dqn":
        return table_dqn(result)
    lines = [f"Multi-task PPO at {result['ranks']} ranks ({result['machine']['cpu']}, "
             f"{result['machine']['cores']} cores), at most {result['steps_per_task']:,} steps "
             f"per task, --stop-on-solve, joint run {' '.join(result.get('joint_args', []))}, "
             f"seed {result['seed']}"
             + (" (quick: budgets too small to solve)" if result.get("quick") else ""), "",
             *_task_table(result["rows"], [("joint: steps taken", "joint_env_steps", "{:,}")])]
    lines += ["", "| wall time | joint run | two runs alone, added |", "|---|---:|---:|",
              f"| seconds | {result['joint_wall_s']:.1f} | {result['alone_wall_s_total']:.1f} |",
              "", f"Both tasks solved in the joint run: {result['both_solved_in_joint_run']}; "
              f"joint no slower than the two alone: {result['joint_not_slower']}; "
              f"target met: {result['target_met']}."]
    if result.get("joint_unparked"):
        ref = result["joint_unparked"]
        lines.append(
            f"Reference, the joint run without --park-solved-tasks: {ref['wall_s']:.1f} s, both "
            f"solved: {ref['both_solved']}; solved at step (per task) " + ", ".join(
                f"{r['task']} {_fmt(r['unparked_solved_at_task_step'], '{:,}')}"
                for r in result["rows"]) + ".")
        lines.append("Parked at / resumed at step (per task), joint run: " + "; ".join(
            f"{r['task']} {', '.join(f'{s:,}' for s in r['joint_parked_at_task_step']) or '-'}"
            f" / {', '.join(f'{s:,}' for s in r['joint_resumed_at_task_step']) or '-'}"
            for r in result["rows"]) + ".")
    if result.get("load_average"):
        lines.append("Load average (1 min) before the runs (joint, alone, reference): "
                     + ", ".join(f"{x:.1f}" for x in result["load_average"]) + ".")
    return "\n".join(lines)
