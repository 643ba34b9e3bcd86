"""What one rank of the PPO trainer trains: the whole model, or one stage of a pipelined model.

The trainer talks to its shard at a handful of points, so data parallelism and pipeline
parallelism share one training loop:

    grads, data, module     the gradients this rank owns, the ranks it averages them with
                            (for --sync-mode), and the module local-SGD averages
    shuffle_seed(seed)      minibatch order: per rank, or per pipeline (its stages shuffle alike)
    allgather_batch(*tensors)   the update's batch: this rank's rollout, or its whole pipeline's
    forward_backward(obs, rows, loss_fn) -> (loss, stats)   gradients of one minibatch
    clip_(max_norm)         clip by the norm of the WHOLE model's gradient
    allgather_model()       after an update: the whole model current on every rank
    optimizer_state / load_optimizer / sync_params          one checkpoint format for any P

Pipeline acting: every rank keeps the whole model and, after each update, gathers the stages'
new weights with one Allgatherv (``allgather_model``); rollouts and evaluation then run locally. This was
measured against a forward-only pass through the stages at every environment step (see
README.md, pipeline section): for RL-sized models a per-step pipeline pass costs several point-to-point
latencies per env step, while the gather costs one small collective per update.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from mpirl.comm.collectives import FlatGradients, broadcast_tensors, sync_params
from mpirl.comm.exchange import allgatherv
from mpirl.comm.world import Grid, World
from mpirl.pipeline.executor import PipelineExecutor
from mpirl.pipeline.weights import StageSlice

# loss_fn(model output for rows, rows) -> (loss: the mean over rows, stats: {name: mean})
MinibatchLoss = Callable[[torch.Tensor, np.ndarray], "tuple[torch.Tensor, dict]"]


class WholeModel:
    """Data parallelism: this rank trains a full replica; gradients are averaged over ``world``."""

    def __init__(self, world: World, model: torch.nn.Module):
        self.world, self.model = world, model
        self.module, self.data = model, world
        self.grads = FlatGradients(model.parameters(), world)

    def shuffle_seed(self, seed: int) -> int:
        return self.world.rank_seed(seed, 2)

    def allgather_batch(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tensors

    def forward_backward(self, obs: torch.Tensor, rows: np.ndarray, loss_fn: MinibatchLoss):
        loss, stats = loss_fn(self.model(obs[rows]), rows)
        self.grads.zero()
        loss.backward()
        return loss.item(), stats

    def clip_(self, max_norm: float) -> float:
        return self.grads.clip_(max_norm)

    def allgather_model(self) -> None:
        pass

    def optimizer_state(self, optimizer) -> dict:
        return optimizer.state_dict()

    def load_optimizer(self, optimizer, state: dict) -> None:
        """``state`` from a checkpoint (every rank has it)."""
        optimizer.load_state_dict(state)

    def sync_params(self, optimizer) -> None:
        sync_params(self.world, self.model, optimizer)


class PipelineStage:
    """Pipeline parallelism: this rank trains one stage of ``model`` (split by layers over
    ``cfg.pipeline_stages`` ranks) and keeps a whole copy of the model for acting.

    Gradients of the stage are averaged over the same stage of every replica (``grid.data``).
    Checkpoints hold the whole model and whole-model Adam moments, gathered over the pipeline,
    i.e. exactly what a 1-stage run saves: a checkpoint loads with any number of stages.
    """

    def __init__(self, cfg, world: World, model: torch.nn.Module):
        self.world, self.model = world, model
        self.grid = Grid.build(world, cfg.pipeline_stages)
        self.executor = PipelineExecutor.from_layers(
            self.grid, list(model), model.in_shape, cfg.pipeline_schedule, cfg.micro_batches,
            spec=cfg.partition, average_grads=False)  # the --sync-mode strategy averages
        self.module, self.data = self.executor.stage.module, self.grid.data
        self.grads = self.executor.grads
        self.weights = StageSlice(self.grid.pipe, list(self.module.parameters()),
                                  list(model.parameters()))

    def shuffle_seed(self, seed: int) -> int:
        """One seed per pipeline, so its stages shuffle alike (forward_backward still takes
        stage 0's rows, so agreement never rests on RNG state alone)."""
        seq = np.random.SeedSequence([seed, self.grid.replica, 2, self.grid.stages])
        return int(seq.generate_state(1, dtype=np.uint32)[0])

    def allgather_batch(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every stage's rollout rows concatenated in stage order, on every stage: all
        ``tensors`` (same number of rows) packed as one record a row, each field in its own
        dtype (pixels stay uint8: a quarter of float32's bytes), into one Allgatherv."""
        arrays = [t.detach().cpu().numpy() for t in tensors]
        record = np.dtype([(f"f{i}", a.dtype, a.shape[1:]) for i, a in enumerate(arrays)])
        rows = np.empty(len(arrays[0]), record)
        for i, a in enumerate(arrays):
            rows[f"f{i}"] = a
        packed, _ = allgatherv(self.grid.pipe, rows)
        return tuple(torch.from_numpy(np.ascontiguousarray(packed[f"f{i}"])).to(t.device)
                     for i, t in enumerate(tensors))

    def forward_backward(self, obs: torch.Tensor, rows: np.ndarray, loss_fn: MinibatchLoss):
        """The minibatch ``rows`` through the pipeline in micro-batches. Each micro-batch's mean
        loss and stats are weighted by its share of the rows, so their sums are the minibatch
        means a whole-model step computes."""
        # Stage 0's choice of rows is every stage's: the first stage feeds observations and the
        # last scores actions of these rows, so they must agree even if shufflers do not (e.g.
        # after resuming with rank-local RNG states from another layout). One tiny Bcast.
        chosen = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))
        broadcast_tensors(self.grid.pipe, [chosen])
        rows = chosen.numpy()
        n = len(rows)
        bounds = self.executor.micro_bounds(n, self.executor.micro_batches)

        def micro_loss(out: torch.Tensor, m: int):
            part = rows[bounds[m]:bounds[m + 1]]
            loss, stats = loss_fn(out, part)
            share = len(part) / n
            return loss * share, {k: v * share for k, v in stats.items()}

        stage = self.executor.stage
        result = self.executor.train_step(obs[rows] if stage.is_first else None,
                                          micro_loss if stage.is_last else None, n)
        return result.loss, result.metrics

    def clip_(self, max_norm: float) -> float:
        return self.executor.clip_grad_norm_(max_norm)

    def allgather_model(self) -> None:
        self.weights.gather_parameters()

    def optimizer_state(self, optimizer) -> dict:
        """The whole model's Adam state (moments gathered over the pipeline), on every rank."""
        state = optimizer.state_dict()
        for key in ("exp_avg", "exp_avg_sq"):
            state[key] = self.weights.gather(state[key])
        return state

    def load_optimizer(self, optimizer, state: dict) -> None:
        """Whole-model Adam ``state`` (from a checkpoint of any number of stages; every rank has
        it): each stage keeps its own range."""
        total = self.weights.total
        if state["exp_avg"].numel() != total:
            raise ValueError(f"the checkpoint's optimizer state covers {state['exp_avg'].numel()} "
                             f"parameters, the model has {total}")
        optimizer.load_state_dict({"step": state["step"].to(torch.float64).reshape(1),
                                   "exp_avg": self.weights.mine(state["exp_avg"].reshape(-1)),
                                   "exp_avg_sq": self.weights.mine(state["exp_avg_sq"].reshape(-1)),
                                   "lr": state["lr"]})

    def sync_params(self, optimizer) -> None:
        """Rank 0's whole model everywhere; each stage's optimizer state from its replica 0."""
        sync_params(self.world, self.model)
        broadcast_tensors(self.data, optimizer.state_tensors())


def model_shard(cfg, world: World, model: torch.nn.Module):
    """The shard this rank trains for ``--pipeline-stages``."""
    return PipelineStage(cfg, world, model) if cfg.pipeline_stages > 1 else WholeModel(world, model)
