"""Training runs a bench section keeps under ``--out``, so that a section stopped part way goes on
where it stopped.

The long sections (``sac``, ``zoo``) take hours of CPU: more than a Slurm job's time limit or a
working session may give them. Each of their runs is kept, once finished, as
``<out>/runs/<name>.json`` together with the key that produced it (its command line, its
settings) and the machine it ran on. Run the section again with the same ``--out`` and every
kept run whose key still matches is read back instead of being trained again; with
``--time-limit MINUTES`` no new run starts once the limit has passed, and the section's table
says which runs are still to come. A run stopped before it finished is not kept: it starts
again from nothing, so that its wall-clock figures are one run's.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from typing import Callable


def kept_runs(args, section: str) -> "KeptRuns":
    """The kept runs of ``section`` under the bench's ``--out``, ``--time-limit`` and ``--kept``."""
    kept = getattr(args, "kept", None)
    return KeptRuns(args.out, getattr(args, "time_limit", None),
                    None if kept is None else os.path.join(kept, section))


def machine() -> dict:
    """The CPU model, its cores and the Python that measured a figure."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def train_key(n_ranks: int, argv: list[str]) -> list:
    """The key of a training run of ``python -m mpirl.train ARGV`` over ``n_ranks`` ranks: the
    command line and the settings it resolves to beyond the options' defaults (the env's
    defaults and its preset applied: mpirl.config.parse_args), so that a kept run is trained
    again once a preset or a default it trained with has changed, while a new option that keeps
    the old behaviour changes no key."""
    from mpirl.config import FIELDS, parse_args
    as_json = lambda value: json.loads(json.dumps(value))   # noqa: E731 - tuples as lists
    settings = parse_args(list(argv), n_ranks).to_dict()
    return [n_ranks, *argv, {name: value for name, value in as_json(settings).items()
                             if name != "run_dir" and value != as_json(FIELDS[name].default)}]


def run_preset(run_dir: str) -> str:
    """The preset a finished training run took, as its ``config.yaml`` records it."""
    with open(os.path.join(run_dir, "config.yaml")) as fh:
        return next((line.split(":", 1)[1].strip() for line in fh
                     if line.startswith("preset:")), "none")


class KeptRuns:
    """The runs of one section: each trains in ``out_dir/runs/<name>``, and its record is kept
    as ``<records_dir>/<name>.json`` (default: beside it, in ``out_dir/runs``; ``--kept DIR``
    puts them elsewhere, such as a folder that is committed, so that a benchmark can be carried
    on from another checkout). ``time_limit_min``: start no new run after this many minutes
    from now (None: no limit)."""

    def __init__(self, out_dir: str, time_limit_min: float | None = None,
                 records_dir: str | None = None):
        self.work_dir = os.path.join(out_dir, "runs")
        self.dir = records_dir or self.work_dir
        os.makedirs(self.work_dir, exist_ok=True)
        os.makedirs(self.dir, exist_ok=True)
        self.deadline = (None if time_limit_min is None
                         else time.monotonic() + 60.0 * time_limit_min)
        self.reused: list[str] = []      # names read back from an earlier invocation
        self.skipped: list[str] = []     # names not run: the time limit had passed
        self.machines: dict[str, dict] = {}   # name -> the machine its result came from

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def run(self, name: str, key, produce: Callable[[str], dict]) -> dict | None:
        """The result of run ``name``: kept, when one was kept under the same ``key`` (anything
        JSON can hold); else ``produce(run_dir)``'s, kept from now on; None when it was neither
        kept nor started because the time limit had passed, or when ``produce`` gave None (it
        could not run here: SB3 not installed, a timeout), which is not kept, so that the next
        invocation tries again."""
        record_path = os.path.join(self.dir, f"{name}.json")
        key = json.loads(json.dumps(key))          # as it will read back
        if os.path.exists(record_path):
            with open(record_path) as fh:
                record = json.load(fh)
            if record.get("key") == key:
                self.reused.append(name)
                self.machines[name] = record["machine"]
                return record["result"]
        if self.out_of_time():
            self.skipped.append(name)
            return None
        run_dir = os.path.join(self.work_dir, name)
        shutil.rmtree(run_dir, ignore_errors=True)  # a run stopped part way starts again
        result = produce(run_dir)
        if result is None:
            return None
        record = {"key": key, "machine": machine(),
                  "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "result": result}
        partial = record_path + ".part"
        with open(partial, "w") as fh:
            json.dump(record, fh)
        os.replace(partial, record_path)            # kept only once whole
        self.machines[name] = record["machine"]
        return result

    def cpus(self, names) -> set[str]:
        """The CPU models the results of ``names`` came from (those that exist)."""
        return {self.machines[n]["cpu"] for n in names if n in self.machines}

    def summary(self) -> dict:
        return {"reused": list(self.reused), "skipped": list(self.skipped),
                "cpus": sorted(self.cpus(self.machines))}
