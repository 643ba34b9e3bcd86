#!/usr/bin/env python
"""Checksums of short fixed runs of every training mode: proof that a refactoring changed nothing.

    python scripts/checksums.py --out before.json          # record, e.g. before a refactoring
    python scripts/checksums.py --compare before.json      # run again; list what differs

Each mode is a short run with a fixed seed (a few to a few dozen updates, evaluations included,
some stopped and resumed); its checksums are the SHA-256 of the final parameters (the newest
checkpoint's model tensors, by name) and of metrics.jsonl without its wall-clock fields. Value
iteration hashes the V and policy it writes. Bit-for-bit equality is only meaningful on one
machine with one set of libraries: this is a tool for a developer's before/after comparison,
never a committed test (another CPU may round differently).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mpirl.launch import mpirun, train  # noqa: E402

# Wall-clock figures differ from run to run; everything else in a metrics line must not.
TIMING = ("time_s", "sps", "comm_time_s", "update_time_s", "solved_at_time_s")
COMMON = ["--no-tensorboard", "--eval-episodes", "4", "--log-interval", "1000",
          "--hang-timeout", "0"]
PPO = COMMON + ["--num-envs", "4", "--num-steps", "16", "--eval-interval", "4",
                "--total-timesteps", "2560"]
DQN = COMMON + ["--algo", "dqn", "--num-envs", "4", "--eval-interval", "25",
                "--total-timesteps", "3200", "--learning-starts", "400", "--batch-size", "32"]
TASKS = ["--tasks", "CartPole-v1,Acrobot-v1"]

# name: (ranks, options, resume_at: total steps of a first run that is then resumed, or None)
MODES = {
    "ppo": (2, PPO, None),
    "ppo-resumed": (2, PPO, 1280),
    "ppo-box": (2, PPO + ["--env-id", "Pendulum-v1"], None),
    "ppo-1rank": (1, PPO, None),
    "ppo-stages": (2, PPO + ["--pipeline-stages", "2"], None),
    "ppo-stages-x2": (4, PPO + ["--pipeline-stages", "2", "--micro-batches", "2"], None),
    "ppo-local-sgd": (2, PPO + ["--sync-mode", "local-sgd", "--sync-every", "3"], None),
    "ppo-overlap": (2, PPO + ["--sync-mode", "overlap"], None),
    "ppo-target-kl": (2, PPO + ["--target-kl", "0.001"], None),
    "dqn-allgather": (2, DQN + ["--replay-sharing", "allgather"], None),
    "dqn-sharded": (2, DQN + ["--replay-sharing", "sharded"], None),
    "dqn-none": (2, DQN + ["--replay-sharing", "none", "--dueling"], None),
    "dqn-resumed": (2, DQN + ["--replay-sharing", "sharded"], 1600),
    "multitask-ppo": (2, PPO + TASKS, None),
    "multitask-ppo-parked": (3, PPO + ["--tasks", "CartPole-v1:2,Acrobot-v1:1",
                                       "--park-solved-tasks", "--task-targets",
                                       "CartPole-v1:15,Acrobot-v1:-499"], None),
    "multitask-ppo-resumed": (2, PPO + TASKS, 1280),
    "multitask-dqn": (2, DQN + TASKS, None),
}
MDP_MODES = {
    "value-iteration": ["--random-states", "20000", "--random-actions", "4", "--branching", "4"],
    "policy-iteration": ["--gridworld", "12", "--method", "policy"],
    "q-iteration-frozenlake": ["--env", "FrozenLake-v1", "--method", "q"],
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def params_checksum(run_dir: Path) -> str:
    newest = sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))[-1]
    model = torch.load(newest, weights_only=True)["shared"]["model"]
    h = hashlib.sha256()
    for name in sorted(model):
        h.update(name.encode())
        h.update(model[name].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def metrics_checksum(run_dir: Path) -> str:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kept = [{k: v for k, v in sorted(rec.items()) if k not in TIMING} for rec in lines]
    return sha(json.dumps(kept, sort_keys=True).encode())


def run_mode(name: str, ranks: int, options: list[str], resume_at, tmp: Path) -> dict:
    run_dir = tmp / name
    args = options + ["--run-dir", str(run_dir)]
    if resume_at is not None:
        first = [a for a in args]
        first[first.index("--total-timesteps") + 1] = str(resume_at)
        train(ranks, first, timeout=300).check()
        args = args + ["--resume"]
    train(ranks, args, timeout=300).check()
    return {"params": params_checksum(run_dir), "metrics": metrics_checksum(run_dir)}


def run_mdp(name: str, options: list[str], tmp: Path) -> dict:
    run_dir = tmp / name
    mpirun(2, ["-m", "mpirl.mdp", *options, "--run-dir", str(run_dir)], timeout=300).check()
    saved = np.load(run_dir / "mdp.npz")
    return {key: sha(saved[key].tobytes()) for key in sorted(saved.files)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the checksums here (JSON)")
    parser.add_argument("--compare", help="checksums recorded earlier: report every difference")
    parser.add_argument("--only", help="comma-separated mode names (default: all)")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    tmp = Path(tempfile.mkdtemp(prefix="mpirl-checksums-"))
    results: dict = {}
    try:
        for name, (ranks, options, resume_at) in MODES.items():
            if wanted is None or name in wanted:
                results[name] = run_mode(name, ranks, options, resume_at, tmp)
                print(f"{name:24s} {results[name]}", flush=True)
        for name, options in MDP_MODES.items():
            if wanted is None or name in wanted:
                results[name] = run_mdp(name, options, tmp)
                print(f"{name:24s} {results[name]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        differ = [name for name in results if before.get(name) != results[name]]
        for name in differ:
            print(f"DIFFERS {name}: before {before.get(name)}, now {results[name]}")
        print(f"{len(results) - len(differ)} of {len(results)} modes identical")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
