"""A command line as the trainer takes it, for tests: parsed (mpirl.config), then checked
(mpirl.checks) for a world size."""
from mpirl.checks import check
from mpirl.config import Config, parse_args


def validated(argv: list[str], n_ranks: int = 1) -> Config:
    cfg = parse_args(argv, n_ranks)
    check(cfg, n_ranks)
    return cfg
