"""``mpirun -n N python -m mpirl.mdp [options]``: solve a tabular MDP over N ranks.

    mpirun -n 4 python -m mpirl.mdp --env FrozenLake-v1 --map-name 8x8
    mpirun -n 2 python -m mpirl.mdp --random-states 1000000 --random-actions 4 --branching 4
    mpirun -n 2 python -m mpirl.mdp --gridworld 200 --method policy

Rank 0 reads and checks the options (building the env if there is one) and broadcasts its
verdict, so bad input is reported once and every rank exits with code 2. Rank 0 writes the run
dir: mdp.npz (V, policy, and Q for --method q), summary.json, summary.txt and, for grid worlds,
values.png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from mpirl.cli import ArgumentParser, decide_on_root
from mpirl.errors import ConfigError, Problems
from mpirl.comm import World, install_abort_on_error
from mpirl.comm.exchange import allgatherv
from mpirl.mdp.evaluate import evaluate_in_env, evaluate_in_model
from mpirl.mdp.mdp import GridWorld, RandomMDP, load_gym, parse_env_kwargs
from mpirl.mdp.plot import plot_grid
from mpirl.mdp.solve import EXCHANGES, METHODS, solve

PROG = "python -m mpirl.mdp"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Distributed value / Q-value / policy iteration of a "
                     "tabular MDP: mpirun -n N python -m mpirl.mdp [options]. Choose one MDP: "
                     "--env (default FrozenLake-v1), --random-states, or --gridworld.")
    env = parser.add_argument_group("a gymnasium environment with a transition table P")
    env.add_argument("--env", help="environment id, e.g. FrozenLake-v1, Taxi-v4, CliffWalking-v1 "
                                   "(default FrozenLake-v1 when no other MDP is chosen)")
    env.add_argument("--is-slippery", action=argparse.BooleanOptionalAction, default=None,
                     help="FrozenLake: slippery ice (default: the env's own default)")
    env.add_argument("--map-name", help="FrozenLake: 4x4 or 8x8")
    env.add_argument("--env-kwargs", metavar="K=V,...", help="any other keyword arguments of "
                     "gymnasium.make, e.g. map_name=8x8,is_slippery=False")
    rnd = parser.add_argument_group("a random sparse MDP")
    rnd.add_argument("--random-states", type=int, metavar="N", help="number of states")
    rnd.add_argument("--random-actions", type=int, metavar="A", help="actions per state (default 4)")
    rnd.add_argument("--branching", type=int, metavar="B",
                     help="successor states per (state, action) (default 4)")
    grid = parser.add_argument_group("a slippery N x N grid world with walls")
    grid.add_argument("--gridworld", type=int, metavar="N", help="side of the grid")
    grid.add_argument("--slip", type=float, help="probability of sliding sideways (default 0.2)")
    sol = parser.add_argument_group("solving and evaluating")
    sol.add_argument("--method", default="value", choices=METHODS,
                     help="value iteration, Q-value iteration or policy iteration (default value)")
    sol.add_argument("--exchange", default="shared", choices=EXCHANGES,
                     help="how ranks see each other's new values every sweep: shared (one V per "
                     "node in MPI shared memory, Allgatherv between nodes; the default) or "
                     "allgatherv (every rank its own copy of V)")
    sol.add_argument("--gamma", type=float, default=0.99, help="discount in [0, 1) (default 0.99)")
    sol.add_argument("--tol", type=float, default=1e-8,
                     help="stop when the largest Bellman residual is below this (default 1e-8)")
    sol.add_argument("--max-sweeps", type=int, default=100_000,
                     help="give up after this many sweeps (default 100000)")
    sol.add_argument("--seed", type=int, default=0,
                     help="seed of the random MDP / grid walls and of evaluation episodes")
    sol.add_argument("--eval-episodes", type=int, default=100,
                     help="episodes of the greedy policy, split over ranks (default 100; 0: none)")
    sol.add_argument("--eval-max-steps", type=int, metavar="T", help="steps per evaluation "
                     "episode (default: the env's time limit; for generated MDPs the horizon "
                     "where gamma^T < 1e-4)")
    sol.add_argument("--run-dir", help="where results go (default runs/mdp/<mdp>__<method>__<time>)")
    return parser


def parse(argv: list[str] | None, n_ranks: int) -> tuple[argparse.Namespace, object]:
    """Parsed and checked options, and the MDP source (rank 0 only). Raises ConfigError."""
    args = build_parser().parse_args(argv)
    problems = Problems()
    need = problems.need

    chosen = [flag for flag, v in (("--env", args.env), ("--random-states", args.random_states),
                                   ("--gridworld", args.gridworld)) if v is not None]
    need(len(chosen) <= 1, f"choose one MDP, not {' and '.join(chosen)}")
    env_only = [f for f, v in (("--is-slippery", args.is_slippery), ("--map-name", args.map_name),
                               ("--env-kwargs", args.env_kwargs)) if v is not None]
    random_only = [f for f, v in (("--random-actions", args.random_actions),
                                  ("--branching", args.branching)) if v is not None]
    if args.random_states is not None or args.gridworld is not None:
        need(not env_only, f"{', '.join(env_only)} apply only to --env")
    if args.random_states is None:
        need(not random_only, f"{', '.join(random_only)} apply only to --random-states")
    if args.gridworld is None:
        need(args.slip is None, "--slip applies only to --gridworld")
    need(math.isfinite(args.gamma) and 0 <= args.gamma < 1,
         f"--gamma must lie in [0, 1), not {args.gamma}")
    need(math.isfinite(args.tol) and args.tol > 0, f"--tol must be > 0, not {args.tol}")
    need(args.max_sweeps >= 1, f"--max-sweeps must be >= 1, not {args.max_sweeps}")
    need(args.eval_episodes >= 0, f"--eval-episodes must be >= 0, not {args.eval_episodes}")
    need(args.eval_max_steps is None or args.eval_max_steps >= 1,
         f"--eval-max-steps must be >= 1, not {args.eval_max_steps}")
    for flag, value, least in (("--random-states", args.random_states, 1),
                               ("--random-actions", args.random_actions, 1),
                               ("--branching", args.branching, 1), ("--gridworld", args.gridworld, 2)):
        need(value is None or value >= least, f"{flag} must be >= {least}, not {value}")
    need(args.slip is None or 0 <= args.slip <= 1, f"--slip must lie in [0, 1], not {args.slip}")
    need(args.run_dir is None or not os.path.isfile(args.run_dir),
         f"--run-dir {args.run_dir} is a file, not a directory")
    if len(problems) > 1:
        raise ConfigError("invalid options:\n  " + "\n  ".join(problems))
    if problems:
        raise ConfigError(problems[0])

    args.env_kwargs = parse_env_kwargs(args.env_kwargs)
    if args.is_slippery is not None:
        args.env_kwargs["is_slippery"] = args.is_slippery
    if args.map_name is not None:
        args.env_kwargs["map_name"] = args.map_name
    if args.random_states is None and args.gridworld is None and args.env is None:
        args.env = "FrozenLake-v1"
    source = make_source(args)
    if source.n_states < n_ranks:
        raise ConfigError(f"{source.name} has {source.n_states} states: fewer than the {n_ranks} "
                          "ranks, and every rank needs a slice of at least one state")
    return args, source


def make_source(args: argparse.Namespace):
    if args.random_states is not None:
        return RandomMDP(args.random_states, args.random_actions or 4, args.branching or 4,
                         args.seed)
    if args.gridworld is not None:
        return GridWorld(args.gridworld, args.seed, 0.2 if args.slip is None else args.slip)
    return load_gym(args.env, args.env_kwargs)


def main(argv: list[str] | None = None) -> int:
    world = World()
    install_abort_on_error()
    mdp_on_root = {}   # the MDP rank 0 built while checking; the others build their own

    def decide() -> argparse.Namespace:
        args, mdp_on_root["source"] = parse(argv, world.size)
        return args

    args = decide_on_root(world, decide, PROG)
    source = mdp_on_root["source"] if world.is_root else make_source(args)

    solution = solve(world, source, args.method, args.gamma, args.tol, args.max_sweeps,
                     args.exchange)
    policy = allgatherv(world, solution.policy)[0]  # every rank evaluates some episodes
    Q = allgatherv(world, solution.Q)[0] if solution.Q is not None else None
    n_transitions = sum(world.allgather_obj(solution.transitions))
    evaluation = None
    if args.eval_episodes:
        if args.env is not None:
            evaluation = evaluate_in_env(world, args.env, args.env_kwargs, policy,
                                         args.eval_episodes, args.gamma, args.seed,
                                         args.eval_max_steps, source.success_reward)
        else:
            evaluation = evaluate_in_model(world, source, policy, args.eval_episodes, args.gamma,
                                           args.seed, args.eval_max_steps)
    if world.is_root:
        write_run_dir(args, source, solution, policy, Q, evaluation, world.size, n_transitions)
    return 0


def start_value(source, V: np.ndarray) -> float:
    """V at the start: gymnasium's tables start from a distribution over states (Taxi's is
    spread over hundreds), the generated MDPs from one state."""
    start = source.start
    return float(np.dot(start, V)) if isinstance(start, np.ndarray) else float(V[int(start)])


def write_run_dir(args, source, solution, policy, Q, evaluation, n_ranks, n_transitions) -> None:
    run_dir = args.run_dir or os.path.join(
        "runs", "mdp", f"{source.name.split('[')[0]}__{args.method}__{int(time.time())}")
    os.makedirs(run_dir, exist_ok=True)
    arrays = {"V": solution.V, "policy": policy}
    if Q is not None:
        arrays["Q"] = Q
    _atomic(os.path.join(run_dir, "mdp.npz"), lambda fh: np.savez_compressed(fh, **arrays), "wb")
    summary = {
        "mdp": source.name, "states": source.n_states, "actions": source.n_actions,
        "transitions": n_transitions, "method": args.method, "gamma": args.gamma, "tol": args.tol,
        "ranks": n_ranks, "exchange": solution.exchange, "sweeps": solution.sweeps,
        "residual": solution.residual,
        "converged": solution.converged, "policy_iterations": solution.policy_iterations,
        "seconds": solution.seconds, "seconds_per_sweep": solution.seconds / max(solution.sweeps, 1),
        "comm_seconds": solution.comm_seconds, "value_of_start": start_value(source, solution.V),
        "evaluation": evaluation.to_dict() if evaluation else None,
        "files": ["mdp.npz", "summary.json", "summary.txt"],
    }
    layout = getattr(source, "layout", None)
    if layout is not None:
        if layout.labels is None and hasattr(source, "labels"):
            layout.labels = source.labels()
        title = f"{source.name}  {args.method} iteration, gamma={args.gamma}"
        plot_grid(os.path.join(run_dir, "values.png"), layout, solution.V, policy, title)
        summary["files"].append("values.png")
    text = summary_text(summary)
    _atomic(os.path.join(run_dir, "summary.json"), lambda fh: json.dump(summary, fh, indent=2))
    _atomic(os.path.join(run_dir, "summary.txt"), lambda fh: fh.write(text))
    print(text + f"results in {run_dir}", flush=True)


def summary_text(s: dict) -> str:
    lines = [
        f"MDP            {s['mdp']}: {s['states']} states, {s['actions']} actions, "
        f"{s['transitions']} transitions",
        f"solved by      {s['method']} iteration on {s['ranks']} rank(s)"
        + (f" (V exchanged by {s['exchange']})" if s["ranks"] > 1 else "")
        + f", gamma {s['gamma']}, tol {s['tol']:g}",
        f"sweeps         {s['sweeps']}" + (f" ({s['policy_iterations']} policy improvements)"
                                           if s["policy_iterations"] else ""),
        f"residual       {s['residual']:.3g}" + ("" if s["converged"] else
                                                  "  NOT CONVERGED: raise --max-sweeps"),
        f"time           {s['seconds']:.3f} s ({1e3 * s['seconds_per_sweep']:.3f} ms per sweep, "
        f"{s['comm_seconds']:.3f} s communicating)",
        f"V(start)       {s['value_of_start']:.6g}",
    ]
    e = s["evaluation"]
    if e:
        lines.append(f"greedy policy  {e['episodes']} episodes (at most {e['max_steps']} steps): "
                     f"return {e['mean_return']:.4g} +- {e['stderr_return']:.2g}, discounted "
                     f"{e['mean_discounted_return']:.4g} +- {e['stderr_discounted_return']:.2g}, "
                     f"length {e['mean_length']:.1f}"
                     + (f", success rate {e['success_rate']:.3f}" if e["success_rate"] is not None
                        else ""))
    return "\n".join(lines) + "\n"


def _atomic(path: str, write, mode: str = "w") -> None:
    """Write to a temporary name, then rename: a crash never leaves half a file behind."""
    tmp = path + ".tmp"
    with open(tmp, mode) as fh:
        write(fh)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
