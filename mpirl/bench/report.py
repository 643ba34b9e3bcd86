"""docs/benchmarks.md: the benchmark's figures, written by ``python -m mpirl.bench`` itself.

The file holds one block per output of a section, between two markers::

    <!-- bench:ppo -->
    ...the title, date, machine, command and table of the last run of `bench ppo`...
    <!-- /bench:ppo -->

A run of a section replaces its own block and leaves every other byte of the file as it was, so
the file always shows each section's latest run, whichever runs produced the others. A missing
file is created with every block holding a placeholder until its section is run.

Everything here is a pure function of its arguments except ``update``, which reads and writes
the file.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """One block of docs/benchmarks.md: what one section writes under one output name."""
    name: str                 # the output name: bench-results/<name>.json, the block's markers
    section: str              # python -m mpirl.bench <section>
    title: str
    page: str = ""            # the docs page that says what the section measures and why
    options: tuple = ()       # the options that make the section write this output

    @property
    def command(self) -> str:
        return " ".join(["python -m mpirl.bench", self.section, *self.options])


# In the order of the README's capabilities. A section's module names its output with
# output_name(args) (default: the section's name); every name it can return has a block here.
BLOCKS = (
    Block("ppo", "ppo", "Data-parallel PPO", "ppo.md"),
    Block("pipeline", "pipeline", "Pipeline stages", "pipeline.md"),
    Block("scaling", "scaling", "Sync modes and rank scaling", "sync-and-scaling.md"),
    Block("replay", "replay", "Replay memory", "replay-dqn.md"),
    Block("dqn", "dqn", "DQN: time to solve CartPole-v1", "replay-dqn.md"),
    Block("multitask", "multitask", "Multi-task PPO", "multitask.md"),
    Block("multitask-dqn", "multitask", "Multi-task DQN", "multitask.md", ("--dqn",)),
    Block("mdp", "mdp", "Tabular MDPs: distributed value iteration", "mdp.md"),
    Block("zoo", "zoo", "Beyond CartPole: presets and defaults against the published tables",
          "presets.md"),
    Block("sac", "sac", "Off-policy continuous control: SAC over the shared replay memory",
          "offpolicy.md"),
    Block("impala", "impala", "IMPALA: asynchronous actors and learners, and a straggler",
          "impala.md"),
    Block("atari", "atari", "Atari from pixels: PPO against SB3, the update against its kernels",
          "atari.md"),
    Block("breakout", "breakout", "Breakout from pixels: PPO learning, with and without the "
          "kernel levers", "atari.md"),
)

HEADER = """\
# Benchmarks

Written by `python -m mpirl.bench [SECTION ...]` (`make bench`): each section's run replaces its
own block below and leaves the others alone, so every block names the date, the machine and the
command that produced it. Do not edit the blocks by hand; rerun the section instead. Runs with
`--quick` (smoke runs with tiny budgets) write here only when given `--docs` explicitly.

What each section measures, and the targets its verdicts judge, is on the page its title links
to. Figures of earlier versions are in [CHANGELOG.md](../CHANGELOG.md).
"""


def block_for(name: str) -> Block:
    """The block of an output name; a name this table lacks gets a plain block of its own."""
    for block in BLOCKS:
        if block.name == name:
            return block
    return Block(name, name, name)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def _wrap(block: Block, body: str) -> str:
    begin, end = markers(block.name)
    title = f"[{block.title}]({block.page})" if block.page else block.title
    return f"{begin}\n## {title}\n\n{body.strip()}\n{end}"


def placeholder(block: Block) -> str:
    """A block that has not been run by this version yet."""
    return _wrap(block, f"Not yet run by this version; run `{block.command}`.")


def render_block(block: Block, table: str, *, date: str, machine: dict, command: str,
                 quick: bool = False, images: tuple = ()) -> str:
    """The block of one run: when, where and how it ran, then the section's table as printed.

    ``machine`` is ``mpirl.bench.kept.machine()``; ``images`` are paths relative to the
    docs file (plots the section drew), shown after the table.
    """
    where = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"
    if machine.get("python"):
        where += f", Python {machine['python']}"
    lines = [f"Run {date} on {where}, with `{command}`."]
    if quick:
        lines.append("A quick run (`--quick`): tiny budgets, a smoke test; its figures are not "
                     "results.")
    lines += ["", table.strip()]
    if images:
        lines += [""] + [f"![{os.path.splitext(os.path.basename(p))[0]}]({p})" for p in images]
    return _wrap(block, "\n".join(lines))


def new_document(blocks: tuple = BLOCKS) -> str:
    """The whole file as a fresh checkout has it: the header, then every block's placeholder."""
    return HEADER + "".join(f"\n{placeholder(b)}\n" for b in blocks)


def replace_block(text: str, name: str, block_text: str) -> str:
    """``text`` with the block ``name`` replaced by ``block_text`` (markers included).

    Every byte outside that block stays as it was. A block the text lacks is appended at the end.
    """
    begin, end = markers(name)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    found = pattern.findall(text)
    if len(found) > 1:
        raise ValueError(f"{begin} appears {len(found)} times")
    if not found:
        if begin in text or end in text:
            raise ValueError(f"{begin} without its {end} (or the other way round)")
        return text.rstrip("\n") + "\n\n" + block_text + "\n"
    return pattern.sub(lambda _: block_text, text, count=1)


def update(path: str, name: str, block_text: str) -> None:
    """Replace block ``name`` of the file at ``path``, creating the file if it is missing.

    The new text is written to a temporary file and renamed into place, so a reader never sees
    half a file.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        text, mode = new_document(), 0o644
    text = replace_block(text, name, block_text)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".benchmarks-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
