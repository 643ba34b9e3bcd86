"""How replicas agree on an update: the ``--sync-mode`` strategies.

A learner calls, for every minibatch and once per update::

    grads.zero(); loss.backward()       # overlap: buckets already travelling during backward
    sync.gradients_ready()              # allreduce: average the flat gradient now;
                                        # overlap: wait for the buckets; local-sgd: nothing
    ...clip, optimizer.step()
    metrics = sync.end_update(update)   # local-sgd: average parameters every K updates

``replicas_identical`` says whether parameters are expected to be bit-identical across ranks
right now (false between local-sgd averagings), so the desync check knows when to look.
Every strategy adds the seconds it spends communicating to ``grads.comm_time_s``, the
trainer's ``comm_time_s`` metric.

    allreduce   one blocking Allreduce of the whole flat gradient per minibatch
    overlap     the flat gradient cut into buckets of about --bucket-mb; each bucket's
                Iallreduce starts from a gradient hook as soon as backward has finished all its
                gradients, so the last layers' buckets travel while the first layers' gradients
                are still being computed (DDP's scheme, without copies: buckets are slices)
    local-sgd   no communication per minibatch; every K updates one Allreduce of a flat buffer
                holding parameters and optimizer moments averages the replicas (Lin et al.,
                "Don't use large mini-batches, use local SGD", 2020); ``drift`` is logged then
"""
from __future__ import annotations

import time

import torch
from mpi4py import MPI

from mpirl.comm.collectives import (FlatGradients, allreduce_sum, flatten_into,
                                    optimizer_state_tensors, unflatten_from)
from mpirl.comm.world import World


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

    def average(self) -> float:
        """Make the replicas agree now: they already do (returns the drift, 0)."""
        return 0.0


class OverlapSync(AllreduceSync):
    """Gradient buckets averaged with Iallreduce while backward is still running.

    Buckets are contiguous slices of ``grads.flat`` of about ``bucket_mb`` MiB, formed from the
    END of the buffer (the output layers, whose gradients backward produces first). A
    post-accumulate-grad hook on each parameter counts down its bucket; when a bucket's last
    gradient is final its Iallreduce starts. Buckets always start in the same order (bucket i
    waits for buckets < i), because MPI needs every rank to issue its collectives in one order.
    A bucket whose parameters got no gradient this backward (unused parameters) starts in
    :meth:`gradients_ready`, so nothing ever waits for a hook that will not fire.

    ``comm_time_s`` counts the communication backward could not hide: the starts plus the wait.
    One backward per :meth:`gradients_ready`: a second backward would write into buckets that
    are already in flight, so it raises instead.
    """

    def __init__(self, world: World, grads: FlatGradients, bucket_mb: float = 1.0):
        self.world = world
        self.grads = grads
        self.buckets = self._plan(grads, int(bucket_mb * 2**20))  # [(start, stop)], back first
        self._size = [0] * len(self.buckets)      # parameters per bucket
        self._left: list[int] = []                # gradients still to come, per bucket
        self._requests: list[MPI.Request] = []
        self._next = 0                            # the next bucket to start, in order
        self._hooks = []
        if world.size == 1:
            return                                # nothing to average: no hooks at all
        offset = 0
        for p in grads.params:
            bucket = next(i for i, (lo, hi) in enumerate(self.buckets) if lo <= offset < hi)
            self._size[bucket] += 1
            self._hooks.append(p.register_post_accumulate_grad_hook(self._hook(bucket)))
            offset += p.numel()
        self._reset()

    @staticmethod
    def _plan(grads: FlatGradients, bucket_bytes: int) -> list[tuple[int, int]]:
        """Bucket bounds [start, stop) over the flat buffer, last parameters first; a bucket holds
        whole parameters and closes once it reaches ``bucket_bytes`` (so one large parameter may
        make a bucket larger)."""
        bucket_elems = max(1, bucket_bytes // grads.flat.element_size())
        sizes = [p.numel() for p in grads.params]
        buckets, stop, start = [], grads.numel, grads.numel
        for i in reversed(range(len(sizes))):
            start -= sizes[i]
            if stop - start >= bucket_elems or i == 0:
                buckets.append((start, stop))
                stop = start
        return buckets

    def _reset(self) -> None:
        self._left = list(self._size)
        self._requests = []
        self._next = 0

    def _hook(self, bucket: int):
        def ready(param: torch.Tensor) -> None:
            if bucket < self._next:  # MPI may be summing this slice right now
                raise RuntimeError("--sync-mode overlap: a gradient arrived for a bucket already "
                                   "in flight; call gradients_ready() after every backward "
                                   "(gradient accumulation over several backwards is not "
                                   "supported)")
            self._left[bucket] -= 1
            self._start_ready()
        return ready

    def _start(self, bucket: int) -> None:
        lo, hi = self.buckets[bucket]
        buf = self.grads.flat[lo:hi].numpy()  # a view: MPI sums in place, no copy
        self._requests.append(self.world.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM))

    def _start_ready(self) -> None:
        t0 = time.perf_counter()
        while self._next < len(self.buckets) and self._left[self._next] <= 0:
            self._start(self._next)
            self._next += 1
        if self._requests:
            MPI.Request.Testall(self._requests)  # let MPI progress the ones in flight
        self.grads.comm_time_s += time.perf_counter() - t0

    def gradients_ready(self) -> None:
        if self.world.size == 1:
            return
        t0 = time.perf_counter()
        while self._next < len(self.buckets):  # buckets whose hooks did not all fire
            self._start(self._next)
            self._next += 1
        MPI.Request.Waitall(self._requests)
        self.grads.comm_time_s += time.perf_counter() - t0
        self.grads.flat.mul_(1.0 / self.world.size)
        self._reset()

    def close(self) -> None:
        """Remove the gradient hooks (the module then trains without them)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []


def replica_drift(world: World, mine: torch.Tensor, mean: torch.Tensor) -> float:
    """Mean over ranks of ||mine - mean|| / ||mean||: how far the replicas have drifted apart.

    ``mine``: this rank's flat parameters, ``mean``: their average over ranks (same shape).
    One tiny Allreduce; 0 when every replica equals the average.
    """
    distance = float(torch.linalg.vector_norm(mine - mean))
    scale = max(float(torch.linalg.vector_norm(mean)), 1e-12)
    return float(allreduce_sum(world, [distance / scale])[0]) / world.size


class LocalSGDSync:
    """Each rank steps on its own gradients; every ``sync_every`` updates the replicas average.

    What is averaged: the module's parameters and the optimizer's floating-point state of the
    parameters' dtype (Adam's moments; FlatAdam's float64 step count is equal everywhere and
    stays out), packed into one preallocated flat buffer so that averaging is a single
    Allreduce. Just before replacing its parameters by the average, each rank measures its
    distance from it: ``drift`` = mean over ranks of ||theta_r - mean|| / ||mean||.
    """

    def __init__(self, world: World, grads: FlatGradients, module: torch.nn.Module,
                 optimizer=None, sync_every: int = 8):
        if sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, not {sync_every}")
        self.world = world
        self.grads = grads
        self.module = module
        self.optimizer = optimizer
        self.sync_every = sync_every
        self.buffer = torch.zeros(0)
        self.replicas_identical = True   # all ranks start from rank 0's broadcast copy

    def _tensors(self) -> tuple[list[torch.Tensor], int]:
        """What averaging covers, in a fixed order, and how many leading elements are parameters.
        Asked afresh each time: a torch optimizer may create its state lazily."""
        params = list(self.module.parameters())
        state = optimizer_state_tensors(self.optimizer) if self.optimizer is not None else []
        dtype = params[0].dtype
        return params + [t for t in state if t.dtype == dtype], sum(p.numel() for p in params)

    def gradients_ready(self) -> None:
        if self.world.size > 1:
            self.replicas_identical = False   # a local step is about to be taken

    def end_update(self, update: int) -> dict:
        if update % self.sync_every or self.world.size == 1:
            return {}
        return {"drift": self.average()}

    def average(self) -> float:
        """Average parameters and optimizer state over ranks now; returns the drift before."""
        t0 = time.perf_counter()
        tensors, n_params = self._tensors()
        numel = sum(t.numel() for t in tensors)
        if self.buffer.numel() != numel:
            self.buffer = torch.zeros(numel, dtype=tensors[0].dtype)
        flatten_into(tensors, out=self.buffer)
        mine = self.buffer[:n_params].clone()
        self.world.comm.Allreduce(MPI.IN_PLACE, self.buffer.numpy(), op=MPI.SUM)
        self.buffer.mul_(1.0 / self.world.size)
        drift = replica_drift(self.world, mine, self.buffer[:n_params])
        unflatten_from(self.buffer, tensors)
        self.grads.comm_time_s += time.perf_counter() - t0
        self.replicas_identical = True
        return drift


def make_sync(mode: str, world: World, grads: FlatGradients, module=None, optimizer=None,
              sync_every: int = 1, bucket_mb: float = 1.0):
    """The strategy for ``--sync-mode``."""
    if mode == "allreduce":
        return AllreduceSync(world, grads)
    if mode == "overlap":
        return OverlapSync(world, grads, bucket_mb)
    if mode == "local-sgd":
        if module is None:
            raise ValueError("--sync-mode local-sgd needs the module whose parameters it averages")
        return LocalSGDSync(world, grads, module, optimizer, sync_every)
    raise ValueError(f"unknown --sync-mode {mode!r}")
