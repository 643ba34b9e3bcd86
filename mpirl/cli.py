"""What the command-line programs (``mpirl.train``, ``mpirl.mdp``) share: a parser whose errors are
:class:`~mpirl.errors.ConfigError`, and the rule that rank 0 decides.

Every rank parsing and checking its own command line would print each problem once per rank, and
ranks that disagree (a file seen by one node only) would go different ways. Instead rank 0 parses
and checks everything, then broadcasts its verdict: every rank goes on with the same result, or
every rank exits with rank 0's code after rank 0 alone has printed the one message.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, TypeVar

from mpirl.errors import ConfigError

T = TypeVar("T")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing and exiting on every rank."""

    def error(self, message):
        raise ConfigError(f"{message}\n(see: {self.prog} --help)")

    def _get_formatter(self):  # defaults are already in each help line
        return argparse.HelpFormatter(self.prog, max_help_position=34, width=100)


def decide_on_root(world, decide: Callable[[], T], prog: str) -> T:
    """``decide()`` on rank 0 (parse and check; it may raise ConfigError, or SystemExit after
    --help), its result broadcast to every rank. Bad input: rank 0 prints ``prog: error: ...``
    once and every rank exits with code 2; --help: every rank exits 0."""
    verdict = None
    if world.is_root:
        try:
            verdict = ("ok", decide())
        except ConfigError as exc:
            verdict = ("error", str(exc))
        except SystemExit as exc:  # --help has been printed
            verdict = ("exit", exc.code or 0)
    kind, value = world.bcast_obj(verdict)
    if kind == "ok":
        return value
    if kind == "error" and world.is_root:
        print(f"{prog}: error: {value}", file=sys.stderr, flush=True)
    sys.exit(2 if kind == "error" else value)
