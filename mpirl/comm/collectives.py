"""Collectives on contiguous buffers: gradient averaging, broadcasts, global statistics, checks.

Bulk data always travels through mpi4py's upper-case calls on numpy buffers (no pickling).
Torch CPU tensors share memory with ``tensor.numpy()``, so MPI reads and writes them in place;
a GPU's tensors go to a CUDA-aware MPI as they are, or are staged through host memory.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from mpi4py import MPI

from mpirl.comm.world import World


class DesyncError(RuntimeError):
    """Replicas that should hold identical parameters do not."""


# -- small numeric reductions -------------------------------------------------------------------
def allreduce_sum(world: World, values) -> np.ndarray:
    """Element-wise sum over ranks of a small float64 vector (a copy; the input is untouched)."""
    return _allreduce(world, values, MPI.SUM)


def allreduce_max(world: World, values) -> np.ndarray:
    """Element-wise maximum over ranks of a small float64 vector (a copy)."""
    return _allreduce(world, values, MPI.MAX)


def _allreduce(world: World, values, op: MPI.Op) -> np.ndarray:
    buf = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    if world.size > 1:
        world.comm.Allreduce(MPI.IN_PLACE, buf, op=op)
    return buf


def allreduce_mean(world: World, value: float, count: int | None = None) -> float:
    """The mean over ranks of a scalar: its sum over ``world`` divided by ``count`` (default: the
    number of ranks; fewer when some ranks contribute 0, e.g. parked ones)."""
    return allreduce_sum(world, [value])[0] / (world.size if count is None else count)


def wait_idle(request: MPI.Request, first_sleep: float = 5e-5, max_sleep: float = 1e-3) -> None:
    """Wait for ``request`` without keeping a core busy: Test, then sleep, doubling the sleep from
    ``first_sleep`` up to ``max_sleep`` seconds. (A blocking MPI call polls; with Open MPI's
    mpi_yield_when_idle it yields between polls, but still takes a core's share of time from
    ranks that have work.) Each Test also advances the collective's progress on this rank, so
    the others wait at most about one sleep for it."""
    sleep = first_sleep
    while not request.Test():
        time.sleep(sleep)
        sleep = min(2 * sleep, max_sleep)


def allreduce_sum_nonblocking(world: World, values, idle: bool) -> np.ndarray:
    """:func:`allreduce_sum` as an Iallreduce: waited for with :func:`wait_idle` when ``idle`` (a
    rank with nothing else to do), else with Wait(). Every rank of ``world`` must call this (not
    the blocking version) for the same reduction: MPI does not match the two."""
    buf = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    if world.size > 1:
        request = world.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        wait_idle(request) if idle else request.Wait()
    return buf


def allreduce_mean_std(world: World, x: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Mean and (population) standard deviation of ``x`` pooled over all ranks, in float64."""
    x = x.detach().double().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
    n, s, ss = allreduce_sum(world, [x.size, x.sum(), np.square(x).sum()])
    mean = s / max(n, 1.0)
    var = max(ss / max(n, 1.0) - mean * mean, 0.0)
    return float(mean), float(np.sqrt(var))


# -- broadcasts ---------------------------------------------------------------------------------
def flatten_into(tensors: Sequence[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
    """Concatenate tensors (any shapes, one dtype) into one contiguous 1-D tensor."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors]) if out is None else out
    if out is not None:
        offset = 0
        for t in tensors:
            n = t.numel()
            out[offset:offset + n].copy_(t.detach().reshape(-1))
            offset += n
    return flat


def unflatten_from(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
    """Copy slices of ``flat`` back into ``tensors`` in order (the inverse of flatten_into)."""
    offset = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n


def broadcast_tensors(world: World, tensors: Sequence[torch.Tensor], root: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with root's values: one Bcast per dtype."""
    if world.size == 1 or not tensors:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = flatten_into(group).contiguous().cpu()   # (a GPU's tensors staged on the host)
        world.comm.Bcast(flat.numpy(), root=root)
        unflatten_from(flat, group)


def broadcast_state(world: World, state, root: int = 0):
    """A nested state (dicts and lists of tensors and small plain values, as a checkpoint holds),
    given on ``root``, returned on every rank: its structure and small values in one pickled
    broadcast, its tensors in one Bcast per dtype (no bulk data is pickled)."""
    if world.size == 1:
        return state
    tensors: list[torch.Tensor] = []

    def to_slot(tensor: torch.Tensor) -> _TensorSlot:
        tensors.append(tensor.detach().contiguous())
        return _TensorSlot(len(tensors) - 1, tuple(tensor.shape), tensor.dtype)

    def new_tensor(slot: _TensorSlot) -> _TensorSlot:
        tensors.append(torch.empty(slot.shape, dtype=slot.dtype))
        return slot

    skeleton = world.bcast_obj(_map_leaves(state, torch.Tensor, to_slot)
                               if world.rank == root else None, root=root)
    if world.rank != root:
        _map_leaves(skeleton, _TensorSlot, new_tensor)   # (in slot order: the walk's order)
    broadcast_tensors(world, tensors, root=root)
    return _map_leaves(skeleton, _TensorSlot, lambda slot: tensors[slot.index])


def _map_leaves(value, kind: type, fn):
    """``value`` with every leaf of type ``kind`` in its dicts, lists and tuples replaced by
    ``fn(leaf)``, in a fixed order (dict order, then list order)."""
    if isinstance(value, kind):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_leaves(v, kind, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_leaves(v, kind, fn) for v in value)
    return value


@dataclass(frozen=True)
class _TensorSlot:
    """Where a tensor sits in a state broadcast by :func:`broadcast_state`."""
    index: int
    shape: tuple
    dtype: torch.dtype


def optimizer_state_tensors(optimizer) -> list[torch.Tensor]:
    """The optimizer's state tensors in a fixed order: FlatAdam's, or a torch optimizer's
    (parameter order, then key order; a torch optimizer creates its state at its first step)."""
    if hasattr(optimizer, "state_tensors"):  # mpirl.optim.FlatAdam
        return optimizer.state_tensors()
    out = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            out.extend(state[k] for k in sorted(state) if isinstance(state[k], torch.Tensor))
    return out


def sync_params(world: World, module: torch.nn.Module,
                optimizer: torch.optim.Optimizer | None = None, root: int = 0) -> None:
    """Broadcast parameters, buffers and (if given) optimizer state from ``root``, the learning
    rate included: a checkpoint restores it on ``root`` only (with a constant learning rate the
    ranks would otherwise step at different rates after a resume)."""
    tensors = [p.data for p in module.parameters()] + [b for b in module.buffers()]
    if optimizer is not None:
        tensors += optimizer_state_tensors(optimizer)
        for group, lr in zip(optimizer.param_groups, world.bcast_obj(
                [g["lr"] for g in optimizer.param_groups] if world.rank == root else None,
                root=root)):
            group["lr"] = lr
    broadcast_tensors(world, tensors, root=root)


# -- gradient averaging -------------------------------------------------------------------------
class FlatGradients:
    """All of a module's gradients as views into one preallocated flat buffer.

    After :meth:`bind`, ``param.grad`` of every parameter is a view into ``self.flat``; autograd
    accumulates into those views in place, so averaging over ranks is a single in-place
    Allreduce of the flat buffer and a scale: no per-parameter calls, no copies.
    (The same trick as DDP's ``gradient_as_bucket_view`` and Baselines' flat MpiAdam buffer.)
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], world: World,
                 path: str | None = None):
        self.params = [p for p in params if p.requires_grad]
        self.world = world
        self.numel = sum(p.numel() for p in self.params)
        dtype = self.params[0].dtype if self.params else torch.float32
        device = self.params[0].device if self.params else torch.device("cpu")
        self.flat = torch.zeros(self.numel, dtype=dtype, device=device)
        # How MPI reaches the buffer: "host" (a CPU tensor's own memory), "device" (a GPU
        # buffer handed to a CUDA-aware MPI) or "staged" (through one host copy; ``path`` can
        # force it on a CPU tensor, as the tests do)
        self.path = path or averaging_path(self.flat)
        self._stage = stage_for(self.flat, self.path)
        self._buf = self._stage if self.path == "device" else self._stage.numpy()
        self._inv_size = np.asarray(1.0 / world.size,
                                    dtype=torch.empty(0, dtype=dtype).numpy().dtype)
        self.comm_time_s = 0.0  # seconds spent in Allreduce since the last reset
        self.bind()

    def bind(self) -> None:
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad = self.flat[offset:offset + n].view_as(p)
            offset += n

    def zero(self) -> None:
        """Zero all gradients in one memset (use instead of ``optimizer.zero_grad``)."""
        self.flat.zero_()

    def average(self) -> None:
        """Replace every gradient by its mean over the ranks of ``world``."""
        if self.world.size == 1:
            return
        t0 = time.perf_counter()
        self._to_mpi()
        self.world.comm.Allreduce(MPI.IN_PLACE, self._buf, op=MPI.SUM)
        self.comm_time_s += time.perf_counter() - t0
        self._from_mpi()

    def average_nonblocking(self, idle: bool = False) -> None:
        """:meth:`average` through an Iallreduce, waited for with :func:`wait_idle` when ``idle``
        (a rank with nothing to add), else with Wait(). Every rank must average the same way:
        MPI does not match a blocking collective with a non-blocking one."""
        if self.world.size == 1:
            return
        t0 = time.perf_counter()
        self._to_mpi()
        request = self.world.comm.Iallreduce(MPI.IN_PLACE, self._buf, op=MPI.SUM)
        wait_idle(request) if idle else request.Wait()
        self.comm_time_s += time.perf_counter() - t0
        self._from_mpi()

    def _to_mpi(self) -> None:
        """Before MPI reads the buffer: the staged copy filled, or the device's work done."""
        if self.path == "staged":
            self._stage.copy_(self.flat)
        elif self.path == "device":
            torch.cuda.current_stream(self.flat.device).synchronize()

    def _from_mpi(self) -> None:
        """After MPI summed the buffer: the mean, back where the gradients live."""
        if self.path == "host":   # numpy: a third of torch's overhead at RL sizes
            np.multiply(self._buf, self._inv_size, out=self._buf)
            return
        if self.path == "staged":
            self.flat.copy_(self._stage)
        self.flat.mul_(float(self._inv_size))

    def global_norm(self) -> float:
        return float(torch.linalg.vector_norm(self.flat))

    def clip_(self, max_norm: float) -> float:
        """Scale gradients so their global L2 norm is at most ``max_norm``; returns the norm before.

        Called after :meth:`average`, the norm is that of the averaged gradient, identical on all
        ranks, so every replica takes the same step.
        """
        norm = self.global_norm()
        if max_norm > 0 and norm > max_norm:
            self.flat.mul_(max_norm / (norm + 1e-6))
        return norm


# -- where MPI reads a tensor -------------------------------------------------------------------
def averaging_path(tensor: torch.Tensor) -> str:
    """How MPI reaches ``tensor``: its own memory on the CPU; on a GPU the device buffer itself
    with a CUDA-aware MPI, else a staged host copy."""
    if tensor.device.type == "cpu":
        return "host"
    from mpirl.comm.world import cuda_aware
    return "device" if cuda_aware() else "staged"


def stage_for(tensor: torch.Tensor, path: str) -> torch.Tensor:
    """The tensor MPI works on for ``path``: ``tensor`` itself, or one host buffer of its size
    (pinned where CUDA is, so that copies to and from the GPU are DMA transfers)."""
    if path != "staged":
        return tensor
    return torch.empty(tensor.shape, dtype=tensor.dtype,
                       pin_memory=tensor.device.type == "cuda")


# -- replica agreement --------------------------------------------------------------------------
def param_checksum(module: torch.nn.Module) -> int:
    """A CRC32 of the parameters' bytes: bit-exact, and cheap for RL-sized models."""
    crc = 0
    for p in module.parameters():
        crc = zlib.crc32(p.detach().cpu().contiguous().numpy().tobytes(), crc)
    return crc


def check_in_sync(world: World, module: torch.nn.Module, what: str = "parameters") -> None:
    """Raise :class:`DesyncError` on every rank if any rank's parameters differ from rank 0's."""
    if world.size == 1:
        return
    mine = np.array([param_checksum(module)], dtype=np.int64)
    every = np.empty(world.size, dtype=np.int64)
    world.comm.Allgather(mine, every)
    bad = [r for r in range(world.size) if every[r] != every[0]]
    if bad:
        raise DesyncError(
            f"replicas out of sync: the {what} of rank(s) {bad} differ from rank 0's "
            f"(checksums {[hex(int(every[r])) for r in [0] + bad]}); stopping rather than "
            "training diverged copies")
