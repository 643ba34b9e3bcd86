"""PopArt (van Hasselt et al. 2016, "Learning values across many orders of magnitude"), per task.

Each task k keeps running first and second moments of its value targets, ``mean[k]`` and
``mean_sq[k]`` (so ``std[k] = sqrt(mean_sq - mean^2)``). Its value head is trained on normalised
targets ``(G - mean[k]) / std[k]``, so a task whose returns are in the thousands pushes the shared
trunk no harder than one whose returns are near 1. The unnormalised value is
``std[k] * head(h) + mean[k]``.

"Preserving Outputs Precisely": whenever the statistics move from (mean, std) to (mean', std'),
the value head's last linear layer is rescaled so the *unnormalised* output is unchanged::

    W' = W * std / std'            b' = (std * b + mean - mean') / std'

The statistics are exponential moving averages with step ``beta``, but never a smaller step
than 1/n at the n-th update, so the first updates are plain averages (no bias towards the
initial mean 0, std 1) and later ones track the non-stationary returns of a learning policy.
"""
from __future__ import annotations

import torch
from torch import nn

STD_MIN, STD_MAX = 1e-4, 1e6


class PopArt(nn.Module):
    """Statistics of the value targets of ``num_tasks`` tasks, and the output-preserving rescale.

    Buffers (all shape (K,), float64, so they are checkpointed and broadcast with the model):
    ``mean``, ``mean_sq`` and ``updates`` (how many statistics updates each task has had).
    """

    def __init__(self, num_tasks: int, beta: float = 0.05):
        super().__init__()
        self.beta = beta
        self.register_buffer("mean", torch.zeros(num_tasks, dtype=torch.float64))
        self.register_buffer("mean_sq", torch.ones(num_tasks, dtype=torch.float64))
        self.register_buffer("updates", torch.zeros(num_tasks, dtype=torch.float64))

    @property
    def std(self) -> torch.Tensor:
        """(K,) float64 standard deviations, kept inside [1e-4, 1e6]."""
        return (self.mean_sq - self.mean ** 2).clamp_min(0).sqrt().clamp(STD_MIN, STD_MAX)

    def normalize(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Targets of task ``task`` in the value head's (normalised) units; any shape."""
        return ((x.double() - self.mean[task]) / self.std[task]).to(x.dtype)

    def denormalize(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """The value head's output of task ``task`` in return units; any shape."""
        return (x.double() * self.std[task] + self.mean[task]).to(x.dtype)

    @torch.no_grad()
    def update(self, batch: torch.Tensor, value_layers: list[nn.Linear]) -> None:
        """Fold in a batch of targets per task and rescale the value heads to preserve outputs.

        batch: (K, 3) float64 rows of (count, sum, sum of squares) of each task's new targets
        (a task with count 0 is left as it was). value_layers[k]: task k's Linear(h, 1).
        """
        batch = torch.as_tensor(batch, dtype=torch.float64)
        for k, (count, total, total_sq) in enumerate(batch.tolist()):
            if count <= 0:
                continue
            old_mean, old_std = self.mean[k].item(), self.std[k].item()
            self.updates[k] += 1
            step = max(self.beta, 1.0 / self.updates[k].item())
            self.mean[k] += step * (total / count - self.mean[k])
            self.mean_sq[k] += step * (total_sq / count - self.mean_sq[k])
            new_mean, new_std = self.mean[k].item(), self.std[k].item()
            layer = value_layers[k]
            # In float64, then cast back: the rescale itself adds no error beyond the cast.
            weight = layer.weight.double() * (old_std / new_std)
            bias = (layer.bias.double() * old_std + old_mean - new_mean) / new_std
            layer.weight.copy_(weight.to(layer.weight.dtype))
            layer.bias.copy_(bias.to(layer.bias.dtype))


class IdentityValueNorm:
    """The value normaliser of runs without PopArt: the value head speaks in return units."""

    def denormalize_(self, values):
        """In place: value-head outputs (any array) -> returns units. Here: nothing to do."""
        return values

    def allreduce_update(self, b_values: torch.Tensor, b_returns: torch.Tensor):
        """Fold in a batch of returns (with every rank's); give (old values, returns) in value-head
        units."""
        return b_values, b_returns
