"""python -m mpirl.bench [SECTION ...] [--quick] [--out DIR] [--seed N] [--dqn]"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time

from mpirl.bench import SECTIONS


def machine() -> dict:
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpirl.bench", description=__doc__)
    parser.add_argument("sections", nargs="*", default=list(SECTIONS),
                        help=f"which sections to run (default: all of {', '.join(SECTIONS)})")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    parser.add_argument("--out", default="bench-results", help="directory for JSON, tables, plots")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the sections that run one (multitask; default 1)")
    parser.add_argument("--dqn", action="store_true",
                        help="multitask: the same comparison with --algo dqn instead of PPO "
                             "(written as multitask-dqn.json / .md)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    os.makedirs(args.out, exist_ok=True)
    for name in args.sections:
        module = importlib.import_module(f"mpirl.bench.{name}")
        print(f"== {name} ==", flush=True)
        t0 = time.time()
        result = module.run(args)
        result = {"section": name, "machine": machine(), "quick": args.quick,
                  "seconds": round(time.time() - t0, 1), **result}
        stem = getattr(module, "output_name", lambda _: name)(args)
        with open(os.path.join(args.out, f"{stem}.json"), "w") as fh:
            json.dump(result, fh, indent=2)
        text = module.table(result)
        with open(os.path.join(args.out, f"{stem}.md"), "w") as fh:
            fh.write(text + "\n")
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
