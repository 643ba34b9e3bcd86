"""Adam over one flat parameter vector: the optimizer half of the flat-buffer design.

RL models are small, so torch's per-parameter optimizer loop is mostly Python and kernel-launch
overhead (and constructing ``torch.optim.Adam`` imports torch._dynamo, ~1 s of start-up). Here
the module's parameters are re-pointed to views of one contiguous vector and the gradients live in
:class:`~mpirl.comm.collectives.FlatGradients`' flat buffer, so an Adam step is one fused kernel
on the CPU (torch's ``_fused_adam_``, the kernel of ``torch.optim.Adam(fused=True)``: one pass
over the vector instead of six, 50 us against 140-210 us for HalfCheetah's 72k parameters, which
PPO's small minibatches pay 160 times an update), or six vector ops elsewhere. The update is
torch.optim.Adam's, formula for formula (tests compare the two).
"""
from __future__ import annotations

import math

import torch

from mpirl.comm.collectives import FlatGradients

# torch's fused CPU Adam kernel (an aten op since torch 2.4; the pinned torch has it)
FUSED = hasattr(torch, "_fused_adam_")


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

    ``parts`` ({name: (start, stop)}, contiguous ranges of the flat vector) makes each range an
    Adam of its own, with its own step count and learning rate (``param_groups``, one per part):
    SAC's and TD3's critics, actor and temperature share one gradient buffer, so one Allreduce
    averages them all, but TD3 steps its actor only every other update, and an actor left out
    must neither move nor age its moments, as a separate torch optimizer would not.
    ``step("critic", "actor")`` steps those parts; ``step()`` all of them. Default: one part,
    the whole vector.

    ``frozen`` (a bool mask over the flat vector, or None) holds elements still: a parked task's
    head. A zero gradient is not enough, since Adam's momentum would keep moving them; their
    first moment is cleared instead, so each step moves them by exactly 0, and a task that
    trains again starts its head's momentum afresh.
    """

    def __init__(self, grads: FlatGradients, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 parts: dict[str, tuple[int, int]] | None = None):
        self.grads = grads
        self.flat = flatten_params(grads.params)
        parts = parts or {"all": (0, self.flat.numel())}
        self.param_groups = [{"name": name, "start": start, "stop": stop, "lr": lr,
                              "betas": betas, "eps": eps}
                             for name, (start, stop) in parts.items()]
        self._index = {group["name"]: i for i, group in enumerate(self.param_groups)}
        # one step count per part; a tensor, so it can be broadcast
        self.step_count = torch.zeros(len(self.param_groups), dtype=torch.float64)
        self._counts = self.step_count.numpy()     # the same memory, counted without tensor ops
        self._steps = list(self.step_count)        # each part's count, a view for the kernel
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.frozen: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, *names: str) -> None:
        for i in ([self._index[n] for n in names] if names else range(len(self.param_groups))):
            self._step_part(i)

    def _step_part(self, i: int) -> None:
        group = self.param_groups[i]
        part = slice(group["start"], group["stop"])
        beta1, beta2 = group["betas"]
        self._counts[i] += 1
        step = float(self._counts[i])
        grad, exp_avg, exp_avg_sq = self.grads.flat[part], self.exp_avg[part], self.exp_avg_sq[part]
        if self.frozen is None and FUSED and self.flat.device.type == "cpu":
            # (the kernel reads the step count, it does not add to it)
            torch._fused_adam_([self.flat[part]], [grad], [exp_avg], [exp_avg_sq], [],
                               [self._steps[i]], lr=group["lr"], beta1=beta1, beta2=beta2,
                               weight_decay=0.0, eps=group["eps"], amsgrad=False,
                               maximize=False)
            return
        exp_avg.lerp_(grad, 1 - beta1)
        if self.frozen is not None:
            exp_avg.masked_fill_(self.frozen[part], 0.0)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = group["lr"] / (1 - beta1 ** step)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** step)).add_(group["eps"])
        self.flat[part].addcdiv_(exp_avg, denom, value=-step_size)

    def zero_grad(self, set_to_none: bool = False) -> None:
        self.grads.zero()

    def state_tensors(self) -> list[torch.Tensor]:
        return [self.step_count, self.exp_avg, self.exp_avg_sq]

    def state_dict(self) -> dict:
        return {"step": self.step_count.clone(), "exp_avg": self.exp_avg.clone(),
                "exp_avg_sq": self.exp_avg_sq.clone(), "lr": self.param_groups[0]["lr"],
                "lrs": [group["lr"] for group in self.param_groups]}

    def load_state_dict(self, state: dict) -> None:
        if state["exp_avg"].shape != self.exp_avg.shape:
            raise ValueError(f"optimizer state for {state['exp_avg'].numel()} parameters, "
                             f"model has {self.exp_avg.numel()}")
        if state["step"].shape != self.step_count.shape:
            raise ValueError(f"optimizer state of {state['step'].numel()} part(s), this "
                             f"optimizer has {self.step_count.numel()}")
        self.step_count.copy_(state["step"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        for group, lr in zip(self.param_groups, state.get("lrs", [state["lr"]])):
            group["lr"] = lr


def module_parts(model: torch.nn.Module, names: list[str]) -> dict[str, tuple[int, int]]:
    """The ranges of the flat vector that ``model``'s submodules ``names`` occupy (for
    :class:`FlatAdam`'s ``parts``), in the order of ``model.parameters()``; every trainable
    parameter must belong to exactly one of them, each a contiguous run."""
    owner = {id(p): name for name in names for p in getattr(model, name).parameters()}
    parts: dict[str, list[int]] = {}
    offset = 0
    for p in (p for p in model.parameters() if p.requires_grad):
        name = owner.get(id(p))
        if name is None:
            raise ValueError(f"a parameter of shape {tuple(p.shape)} is in none of {names}")
        if name in parts and parts[name][1] != offset:
            raise ValueError(f"the parameters of {name!r} are not contiguous in the model")
        parts.setdefault(name, [offset, offset])[1] = offset + p.numel()
        offset += p.numel()
    return {name: tuple(parts[name]) for name in names if name in parts}
