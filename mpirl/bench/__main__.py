"""python -m mpirl.bench [SECTION ...] [--quick] [--out DIR] [--seed N] [--dqn] [--time-limit MIN]
                       [--kept DIR] [--docs PATH]

Each section writes <out>/<name>.json and .md, then replaces its own block of docs/benchmarks.md
(a --quick run only with an explicit --docs; --no-docs: never).
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shlex
import shutil
import sys
import time

from mpirl.bench import SECTIONS, report
from mpirl.bench.kept import machine

DOCS = os.path.join("docs", "benchmarks.md")


def docs_path(args) -> str | None:
    """Where this run writes its blocks: a quick run's figures are a smoke test, not results,
    so it writes docs only when --docs is given."""
    if args.no_docs:
        return None
    if args.docs is not None:
        return args.docs
    return None if args.quick else DOCS


def write_docs(path: str, name: str, result: dict, text: str, command: str) -> None:
    """Replace block ``name`` of the docs file with this run's; plots go beside the file."""
    images = []
    for plot in result.get("plots") or []:
        rel = os.path.join("benchmarks", os.path.basename(plot))
        dest = os.path.join(os.path.dirname(path), rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(plot, dest)
        images.append(rel)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = report.render_block(report.block_for(name), text, date=date,
                                machine=result["machine"], command=command,
                                quick=result["quick"], images=tuple(images))
    report.update(path, name, block)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
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
    parser.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                        help="zoo, sac: start no new training run after this many minutes; finished "
                             "runs are kept under OUT/runs, and the same command with the same "
                             "--out goes on from them")
    parser.add_argument("--kept", metavar="DIR", default=None,
                        help="zoo, sac: keep each finished run's record as DIR/SECTION/NAME.json "
                             "(default OUT/runs); commit DIR to carry a benchmark on from "
                             "another checkout")
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument("--docs", metavar="PATH", default=None,
                      help=f"the file whose section blocks each run replaces (default {DOCS}; "
                           "a --quick run writes it only when this is given)")
    docs.add_argument("--no-docs", action="store_true", help="leave the docs file alone")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    os.makedirs(args.out, exist_ok=True)
    docs_file = docs_path(args)
    command = " ".join(["python -m mpirl.bench", shlex.join(argv)]).rstrip()
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
        if docs_file:
            write_docs(docs_file, stem, result, text, command)
            print(f"(block {stem} of {docs_file} rewritten)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
