"""Stable-Baselines3 runs for the sections that race it: a script in a subprocess, one thread
(or, where a section pairs it with several mpirl ranks, torch's default threads)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys


def sb3_installed() -> bool:
    """Whether SB3 can be raced here; a section without it leaves SB3's side out (its runs are
    neither started nor kept, nor counted as to come)."""
    return importlib.util.find_spec("stable_baselines3") is not None


def run_sb3(code: str, timeout: float, threads: int | None = 1) -> dict | None:
    """Run ``code`` (a script that prints its result as JSON on its last line) with ``threads``
    OpenMP threads (default one, as the mpirl ranks it races have; None: torch's own default, the
    whole machine); the result, or None when SB3 is not installed (or the run outlived
    ``timeout`` seconds). Any other failure raises, with the script's error."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        if "No module named 'stable_baselines3'" in out.stderr:
            return None
        raise RuntimeError(f"SB3 run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
