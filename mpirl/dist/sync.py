"""How replicas agree on an update: the ``--sync-mode`` strategies.

A learner calls, for every minibatch and once per update::

    grads.zero(); loss.backward()
    sync.gradients_ready()        # allreduce: average the flat gradient now
    ...clip, optimizer.step()
    metrics = sync.end_update(update)   # local-sgd: average parameters every K updates

``replicas_identical`` says whether parameters are expected to be bit-identical across ranks
right now (false between local-sgd averagings), so the desync check knows when to look.
"""
from __future__ import annotations

from mpirl.dist.collectives import FlatGradients
from mpirl.dist.world import World


class AllreduceSync:
    """Every gradient averaged over all ranks with one in-place Allreduce of the flat buffer."""

    replicas_identical = True

    def __init__(self, world: World, grads: FlatGradients):
        self.world = world
        self.grads = grads

    def gradients_ready(self) -> None:
        self.grads.average()

    def end_update(self, update: int) -> dict:
        return {}


def make_sync(mode: str, world: World, grads: FlatGradients, module=None, optimizer=None,
              sync_every: int = 1, bucket_mb: float = 1.0):
    """The strategy for ``--sync-mode``."""
    if mode == "allreduce":
        return AllreduceSync(world, grads)
    raise NotImplementedError(f"--sync-mode {mode} is not implemented yet")
