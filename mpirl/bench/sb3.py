"""Stable-Baselines3 runs for the sections that race it: a script in a subprocess, one thread."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def run_sb3(code: str, timeout: float) -> dict | None:
    """Run ``code`` (a script that prints its result as JSON on its last line) with one torch
    thread, as the mpirl ranks it races have; the result, or None when SB3 is not installed (or
    the run outlived ``timeout`` seconds). Any other failure raises, with the script's error."""
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        if "No module named 'stable_baselines3'" in out.stderr:
            return None
        raise RuntimeError(f"SB3 run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
