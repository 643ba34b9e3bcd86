"""Whole-model views of a pipelined model: every stage's slice gathered over the pipeline.

Every rank of a pipeline builds the whole model (same seed) and trains only its stage's slice,
whose parameters are the same tensors as that slice of the whole model. Because the stages are
consecutive layers, concatenating the stages' flat vectors in stage order gives exactly the
unsharded model's flat parameter order; so a gathered vector (parameters, or Adam moments) is
the same thing a 1-stage run holds, whatever the number of stages.
"""
from __future__ import annotations

from typing import Sequence

import torch

from mpirl.comm.collectives import flatten_into, unflatten_from
from mpirl.comm.exchange import allgatherv
from mpirl.comm.world import World


class StageSlice:
    """Where this stage's parameters sit in the whole model's flat parameter vector.

    ``offset``/``numel``: this stage's range; ``total``: the whole model's parameter count.
    """

    def __init__(self, pipe: World, stage_params: Sequence[torch.nn.Parameter],
                 all_params: Sequence[torch.nn.Parameter]):
        self.pipe = pipe
        self.stage_params = list(stage_params)
        self.all_params = list(all_params)
        ids = [id(p) for p in self.all_params]
        first = ids.index(id(self.stage_params[0]))
        if ids[first:first + len(self.stage_params)] != [id(p) for p in self.stage_params]:
            raise ValueError("a stage's parameters must be a consecutive run of the model's")
        self.offset = sum(p.numel() for p in self.all_params[:first])
        self.numel = sum(p.numel() for p in self.stage_params)
        self.total = sum(p.numel() for p in self.all_params)

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Every stage's ``local`` flat vector (numel,) concatenated in stage order: (total,)."""
        full, _ = allgatherv(self.pipe, local.detach().contiguous().numpy())
        if full.shape[0] != self.total:
            raise ValueError(f"gathered {full.shape[0]} values over the pipeline, but the model "
                             f"has {self.total} parameters: do the stages hold the same model?")
        return torch.from_numpy(full)

    def mine(self, full: torch.Tensor) -> torch.Tensor:
        """This stage's range of a whole-model flat vector (a view)."""
        return full[self.offset:self.offset + self.numel]

    def gather_parameters(self) -> None:
        """Make every rank's whole model current: one Allgatherv of the stages' parameters.

        Afterwards each rank can act (or checkpoint) with the whole model locally."""
        if self.pipe.size == 1:
            return
        local = flatten_into(self.stage_params).to(torch.float32)
        unflatten_from(self.gather(local), self.all_params)
