"""How mpirl's programs set torch up so that their numbers repeat: the trainer's across a resume,
and mpirl.evaluate's the trainer's own evaluations.

:func:`reproducible_blas` must run before torch is imported.
"""
from __future__ import annotations

import os


def reproducible_blas() -> None:
    """MKL, torch's BLAS on x86, may round a matrix product differently with the memory
    alignment of its operands on AVX-512 CPUs: a resumed run (whose allocations differ) drifted
    from an uninterrupted one in the last bits, for one stopping update in three. MKL's strict
    conditional numerical reproducibility makes products independent of alignment. A value the
    user sets wins."""
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def torch_threads(cfg, world) -> int:
    """Intra-op threads for this rank: --torch-threads, or else never more than its share of the
    cores, and one for small models, whose kernels are too short for threads to pay for their
    synchronisation (``world.threads_per_rank`` is collective)."""
    if cfg.torch_threads:
        return cfg.torch_threads
    if trains_a_cnn(cfg):
        return world.threads_per_rank()
    widths = list(cfg.hidden_sizes)
    weights = sum(a * b for a, b in zip(widths, widths[1:]))
    return 1 if weights < 100_000 else world.threads_per_rank()


def trains_a_cnn(cfg) -> bool:
    """Whether ``cfg``'s network is the Nature CNN (pixels: an Atari id, or --encoder
    nature-cnn), whose 1.7M weights are no small model whatever --hidden-sizes says."""
    from mpirl.envs.atari import is_atari
    from mpirl.tasks.spec import env_ids
    ids = env_ids(cfg)   # (multi-task: Atari games all, or none, the checks see to it)
    return cfg.encoder == "nature-cnn" or (cfg.encoder == "auto" and bool(ids)
                                           and is_atari(ids[0]))
