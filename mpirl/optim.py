"""Adam over one flat parameter vector: the optimizer half of the flat-buffer design.

RL models are small, so torch's per-parameter optimizer loop is mostly Python and kernel-launch
overhead (and constructing ``torch.optim.Adam`` imports torch._dynamo, ~1 s of start-up). Here
the module's parameters are re-pointed to views of one contiguous vector and the gradients live in
:class:`~mpirl.comm.collectives.FlatGradients`' flat buffer, so an Adam step is six vector ops.
The update is torch.optim.Adam's, formula for formula (tests compare the two).
"""
from __future__ import annotations

import math

import torch

from mpirl.comm.collectives import FlatGradients


def flatten_params(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Move ``params`` into one contiguous vector; each parameter becomes a view of it."""
    flat = torch.cat([p.detach().reshape(-1) for p in params]) if params else torch.zeros(0)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset:offset + n].view_as(p)
        offset += n
    return flat


class FlatAdam:
    """Adam (Kingma & Ba, with torch's bias corrections) on flat parameter and gradient vectors.

    Quacks like a torch optimizer where the trainer needs it: ``param_groups[0]["lr"]`` for
    annealing, ``step()``, ``state_dict()`` / ``load_state_dict()``, and :meth:`state_tensors`
    for broadcasting the state from rank 0.

    ``frozen`` (a bool mask over the flat vector, or None) holds elements still: a parked task's
    head. A zero gradient is not enough, since Adam's momentum would keep moving them; their
    first moment is cleared instead, so each step moves them by exactly 0, and a task that
    trains again starts its head's momentum afresh.
    """

    def __init__(self, grads: FlatGradients, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.grads = grads
        self.flat = flatten_params(grads.params)
        self.param_groups = [{"lr": lr, "betas": betas, "eps": eps}]
        self.step_count = torch.zeros(1, dtype=torch.float64)  # a tensor, so it can be broadcast
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.frozen: torch.Tensor | None = None

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        self.step_count += 1
        step = float(self.step_count[0])
        grad = self.grads.flat
        self.exp_avg.lerp_(grad, 1 - beta1)
        if self.frozen is not None:
            self.exp_avg.masked_fill_(self.frozen, 0.0)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = group["lr"] / (1 - beta1 ** step)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** step)).add_(group["eps"])
        self.flat.addcdiv_(self.exp_avg, denom, value=-step_size)

    def zero_grad(self, set_to_none: bool = False) -> None:
        self.grads.zero()

    def state_tensors(self) -> list[torch.Tensor]:
        return [self.step_count, self.exp_avg, self.exp_avg_sq]

    def state_dict(self) -> dict:
        return {"step": self.step_count.clone(), "exp_avg": self.exp_avg.clone(),
                "exp_avg_sq": self.exp_avg_sq.clone(), "lr": self.param_groups[0]["lr"]}

    def load_state_dict(self, state: dict) -> None:
        if state["exp_avg"].shape != self.exp_avg.shape:
            raise ValueError(f"optimizer state for {state['exp_avg'].numel()} parameters, "
                             f"model has {self.exp_avg.numel()}")
        self.step_count.copy_(state["step"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.param_groups[0]["lr"] = state["lr"]
