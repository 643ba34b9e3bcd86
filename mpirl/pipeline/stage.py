"""One pipeline stage: a consecutive slice of a model's layers, run one micro-batch at a time.

Between a micro-batch's forward and its backward the stage keeps (stashes) that micro-batch's
input and output, because autograd needs them; the schedule decides how many are alive at once.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

LossFn = Callable[[torch.Tensor, int], torch.Tensor]


class Stage:
    """Stage ``index`` of ``stages``: ``module`` maps this stage's inputs to its outputs.

    Shapes: forward takes ``(rows, *in_shape)`` and gives ``(rows, *out_shape)``; on the last
    stage ``loss_fn(output, micro)`` turns the output into that micro-batch's scalar loss, which
    is what the backward starts from.
    """

    def __init__(self, module: nn.Module | Sequence[nn.Module], index: int, stages: int):
        self.module = module if isinstance(module, nn.Module) else nn.Sequential(*module)
        self.index, self.stages = index, stages
        self._inputs: dict[int, torch.Tensor] = {}
        self._outputs: dict[int, torch.Tensor] = {}
        self.peak_stash = 0  # most micro-batches stashed at once, over this stage's life

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.stages - 1

    def parameters(self):
        return self.module.parameters()

    @property
    def stashed(self) -> int:
        return len(self._inputs)

    def forward(self, micro: int, x: torch.Tensor, loss_fn: LossFn | None = None) -> torch.Tensor:
        """Run micro-batch ``micro`` forward and stash what its backward needs.

        Returns the stage's output (to send on), or on the last stage, when ``loss_fn`` is
        given, the micro-batch's loss.
        """
        if not self.is_first:  # the gradient w.r.t. the input goes back to the previous stage
            x = x.detach().requires_grad_(True)
        out = self.module(x)
        if loss_fn is not None:
            out = loss_fn(out, micro)
        self._inputs[micro], self._outputs[micro] = x, out
        self.peak_stash = max(self.peak_stash, len(self._inputs))
        return out

    def backward(self, micro: int, grad_output: torch.Tensor | None = None) -> torch.Tensor | None:
        """Backpropagate micro-batch ``micro`` (gradients accumulate into the parameters' .grad)
        and free its stash. ``grad_output`` is the gradient w.r.t. this stage's output (None on
        the last stage, whose stashed output is the loss). Returns the gradient w.r.t. the input,
        or None on the first stage."""
        x, out = self._inputs.pop(micro), self._outputs.pop(micro)
        torch.autograd.backward(out, grad_output)
        return None if self.is_first else x.grad

    @torch.no_grad()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Forward without autograd or stash (acting, evaluation)."""
        return self.module(x)
