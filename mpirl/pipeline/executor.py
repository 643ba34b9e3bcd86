"""Runs a pipeline schedule over the ranks of one pipeline, then averages gradients over replicas.

Per training step on a :class:`~mpirl.comm.world.Grid`:

1. the first stage cuts the minibatch into M micro-batches; every stage executes its row of the
   schedule: ``F m`` receives activations (unless first), runs forward, sends them on (unless
   last; the last stage computes the micro-batch's loss instead); ``B m`` receives the output
   gradient (unless last), runs backward, sends the input gradient back (unless first);
2. the loss is the SUM of the micro-batch losses, so a loss_fn that returns
   ``sum over the micro-batch's rows / batch rows`` reproduces the unsharded mean exactly;
3. each stage's gradients, accumulated over micro-batches in one flat buffer, are averaged over
   the Grid's ``data`` communicator (the same stage of every replica) with one Allreduce
   (or left to the caller, e.g. a --sync-mode strategy, with ``average_grads=False``).

A minibatch whose rows M does not divide is cut into micro-batches that differ by one row.

The executor never steps an optimizer: the caller does, on the stage's own parameters.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from mpirl.comm.collectives import FlatGradients, allreduce_sum, broadcast_tensors
from mpirl.comm.p2p import PipeLink
from mpirl.comm.world import Grid
from mpirl.pipeline.partition import partition
from mpirl.pipeline.schedule import Schedule, build, simulate
from mpirl.pipeline.stage import Stage

# loss_fn(output of the micro-batch, micro index) -> loss, or (loss, {name: float}) whose
# values are summed over micro-batches (e.g. counts, or per-row sums / batch rows).
MicroLoss = Callable[[torch.Tensor, int], "torch.Tensor | tuple[torch.Tensor, dict]"]


@dataclass
class StepResult:
    """What one training step returns on every rank of the pipeline."""

    loss: float                      # summed over micro-batches
    metrics: dict = field(default_factory=dict)  # loss_fn's extras, summed over micro-batches


@dataclass
class StepTiming:
    """Seconds of this rank's last step: ``busy`` computing, ``wall`` for the whole schedule."""

    busy: float = 0.0
    wall: float = 0.0

    @property
    def bubble(self) -> float:
        return 1.0 - self.busy / self.wall if self.wall > 0 else 0.0


class PipelineExecutor:
    """This rank's stage of a pipeline, and the machinery to train and run it.

    ``in_shape`` is the per-sample input shape of the whole model (only the first stage uses it;
    the others learn theirs from the previous stage when the executor is built: every rank of
    the pipeline must build its executor at the same time). With ``average_grads=False`` the
    caller averages ``self.grads`` over ``grid.data`` itself (e.g. through a --sync-mode strategy).
    """

    def __init__(self, grid: Grid, stage: Stage, in_shape: tuple[int, ...],
                 schedule: str = "1f1b", micro_batches: int = 1, average_grads: bool = True):
        if stage.index != grid.stage or stage.stages != grid.stages:
            raise ValueError(f"stage {stage.index}/{stage.stages} does not match this rank's grid "
                             f"place {grid.stage}/{grid.stages}")
        self.grid, self.stage = grid, stage
        self.link = PipeLink(grid.pipe)
        self.schedule_name, self.micro_batches = schedule, micro_batches
        simulate(self.schedule())   # a schedule that would deadlock fails here, not as a hang
        self.grads = FlatGradients(stage.parameters(), grid.data)
        self.average_grads = average_grads
        self.in_shape, self.out_shape = self._agree_shapes(tuple(in_shape))
        # per-sample shape of the whole model's output (the last stage's), known on every stage
        self.model_out_shape = grid.pipe.bcast_obj(self.out_shape, root=grid.stages - 1)
        self.timing = StepTiming()
        self._buffers: dict[tuple, np.ndarray] = {}

    @classmethod
    def from_layers(cls, grid: Grid, layers, in_shape: tuple[int, ...], schedule: str = "1f1b",
                    micro_batches: int = 1, spec=None, average_grads: bool = True
                    ) -> "PipelineExecutor":
        """Split ``layers`` (every rank passes the same list) into ``grid.stages`` stages, explicit
        ``spec`` or balanced by parameters, and build this rank's executor on its slice. The
        slice shares its parameter tensors with ``layers``."""
        slices = partition(layers, grid.stages, spec)
        return cls(grid, Stage(slices[grid.stage], grid.stage, grid.stages), in_shape,
                   schedule, micro_batches, average_grads)

    # -- set-up --------------------------------------------------------------------------------
    def _agree_shapes(self, in_shape):
        """Pass per-sample shapes down the pipeline: each stage probes its slice with one row."""
        if not self.stage.is_first:
            in_shape = self.link.recv_obj_forward()
        with torch.no_grad():
            out_shape = tuple(self.stage.module(torch.zeros((1, *in_shape))).shape[1:])
        if not self.stage.is_last:
            self.link.send_obj_forward(out_shape)
        return in_shape, out_shape

    def schedule(self) -> Schedule:
        return build(self.schedule_name, self.grid.stages, self.micro_batches)

    def _buffer(self, name: str, slot: int, rows: int, row_shape: tuple[int, ...]) -> np.ndarray:
        """The first ``rows`` rows of a preallocated float32 receive buffer, reused from step to
        step (grown when a larger batch arrives). A prefix of rows is still contiguous."""
        key = (name, slot, row_shape)
        if key not in self._buffers or self._buffers[key].shape[0] < rows:
            self._buffers[key] = np.empty((rows, *row_shape), dtype=np.float32)
        return self._buffers[key][:rows]

    @staticmethod
    def micro_bounds(batch_size: int, micro_batches: int) -> list[int]:
        """Row boundaries of the micro-batches: micro-batch m is rows [b[m], b[m + 1]).

        Equal sizes when ``micro_batches`` divides ``batch_size``; otherwise sizes differ by at
        most one row (a PPO minibatch loses the reset steps of autoreset, so it varies)."""
        if not 1 <= micro_batches <= batch_size:
            raise ValueError(f"a batch of {batch_size} rows cannot be cut into {micro_batches} "
                             "micro-batches")
        return [m * batch_size // micro_batches for m in range(micro_batches + 1)]

    def _recv_forward(self, bounds, m: int, slot: int) -> torch.Tensor:
        buf = self._buffer("act", slot, bounds[m + 1] - bounds[m], self.in_shape)
        return torch.from_numpy(self.link.recv_forward(buf, m))

    # -- training --------------------------------------------------------------------------------
    def train_step(self, inputs: torch.Tensor | None, loss_fn: MicroLoss | None,
                   batch_size: int) -> StepResult:
        """One pipelined forward + backward of a ``batch_size``-row minibatch.

        ``inputs`` (batch_size, *in_shape) is needed on the first stage only, ``loss_fn`` on the
        last stage only. Afterwards each parameter's ``.grad`` on this stage holds the gradient
        of the summed loss, averaged over the data-parallel replicas (if ``average_grads``).
        Every rank of the pipeline returns the same StepResult.
        """
        schedule = self.schedule()
        bounds = self.micro_bounds(batch_size, schedule.micro_batches)
        if self.stage.is_first and (inputs is None or inputs.shape[0] != batch_size):
            raise ValueError(f"the first stage needs inputs of {batch_size} rows, got "
                             f"{None if inputs is None else tuple(inputs.shape)}")
        slots = schedule.peak_stash(self.stage.index)  # activations alive at once on this stage
        losses: list[float] = []
        metrics: dict[str, float] = {}

        def micro_loss(out, micro):
            result = loss_fn(out, micro)
            loss, info = result if isinstance(result, tuple) else (result, {})
            losses.append(float(loss.detach()))
            for k, v in info.items():
                metrics[k] = metrics.get(k, 0.0) + float(v)
            return loss

        self.grads.zero()
        self.link.bytes_sent = 0
        busy, t_start = 0.0, time.perf_counter()
        for action in schedule.actions[self.stage.index]:
            m = action.micro
            if action.kind == "F":
                if self.stage.is_first:
                    x = inputs[bounds[m]:bounds[m + 1]]
                else:  # a slot per stashed micro-batch: autograd keeps the input until B m
                    x = self._recv_forward(bounds, m, m % slots)
                t0 = time.perf_counter()
                out = self.stage.forward(m, x, micro_loss if self.stage.is_last else None)
                busy += time.perf_counter() - t0
                if not self.stage.is_last:
                    self.link.send_forward(out.detach().contiguous().numpy(), m)
            else:
                grad_out = None
                if not self.stage.is_last:
                    buf = self._buffer("grad", 0, bounds[m + 1] - bounds[m], self.out_shape)
                    grad_out = torch.from_numpy(self.link.recv_backward(buf, m))
                t0 = time.perf_counter()
                grad_in = self.stage.backward(m, grad_out)
                busy += time.perf_counter() - t0
                if not self.stage.is_first:
                    self.link.send_backward(grad_in.contiguous().numpy(), m)
            self.link.progress()
        self.link.wait_sends()
        self.timing = StepTiming(busy=busy, wall=time.perf_counter() - t_start)
        if self.average_grads:
            self.grads.average()
        loss, metrics = self.grid.pipe.bcast_obj((sum(losses), metrics), root=self.grid.stages - 1)
        return StepResult(loss, metrics)

    def clip_grad_norm_(self, max_norm: float) -> float:
        """Scale every stage's gradients so the norm over the WHOLE model is <= ``max_norm``
        (one tiny Allreduce over the pipeline); returns the norm before clipping."""
        local = float(torch.sum(self.grads.flat.double() ** 2))
        norm = float(np.sqrt(allreduce_sum(self.grid.pipe, [local])[0]))
        if max_norm > 0 and norm > max_norm:
            self.grads.flat.mul_(max_norm / (norm + 1e-6))
        return norm

    # -- inference -------------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor | None, batch_size: int, micro_batches: int = 1,
                to_all: bool = False) -> torch.Tensor | None:
        """Forward-only pass (no autograd, no stash): ``inputs`` (batch_size, *in_shape) on the
        first stage; returns the model output (batch_size, *out) on the last stage, or on every
        stage of the pipeline if ``to_all`` (one Bcast), else None."""
        bounds = self.micro_bounds(batch_size, micro_batches)
        outputs = []
        for m in range(micro_batches):
            if self.stage.is_first:
                x = inputs[bounds[m]:bounds[m + 1]]
            else:
                x = self._recv_forward(bounds, m, slot=m)
            out = self.stage.infer(x)
            if self.stage.is_last:
                outputs.append(out)
            else:
                self.link.send_forward(out.contiguous().numpy(), m)
        self.link.wait_sends()
        result = torch.cat(outputs) if outputs else None
        if to_all and self.grid.stages > 1:
            if result is None:
                result = torch.empty((batch_size, *self.model_out_shape))
            broadcast_tensors(self.grid.pipe, [result], root=self.grid.stages - 1)
        return result
