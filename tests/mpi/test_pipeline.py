"""Pipelined training under pytest-mpi, against a deep-copied unsharded model on one process.

Every rank builds the same model (same seed) and keeps an untouched deep copy as the reference;
the pipeline trains this rank's slice. Loss and every gradient must match the reference's
(loss summed over micro-batches = the full-batch mean) for M = 1, M = P and M > P, with both
schedules, as a pure pipeline over all ranks and, at 4 ranks, as a 2 x 2 grid.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from mpirl.comm import Grid, World
from mpirl.comm.p2p import PipeLink, ShapeMismatch
from mpirl.pipeline.executor import PipelineExecutor

NPROCS = (2, 3, 4)
TIMEOUT = 120

WIDTHS = [6, 16, 16, 16, 16, 3]  # 5 Linear blocks: splits over up to 5 stages
BATCH = 24                       # divisible by M in {1, P, 2P} for P <= 4
TOL = 1e-5


def _model(seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(WIDTHS, WIDTHS[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def _batch(replica, step=0):
    g = torch.Generator().manual_seed(1000 * step + replica)
    return torch.randn(BATCH, WIDTHS[0], generator=g), torch.randn(BATCH, WIDTHS[-1], generator=g)


def _grids(world):
    """(stages) configurations to try at this world size: a pure pipeline, and 2 x 2 at 4."""
    return [world.size] + ([2] if world.size == 4 else [])


def _cases(world):
    for stages in _grids(world):
        for schedule in ("gpipe", "1f1b"):
            for micro in sorted({1, stages, 2 * stages}):
                yield stages, schedule, micro


def _micro_mse(target, rows):
    """Loss of micro-batch m: squared error summed over its rows / BATCH, so the sum over
    micro-batches is the full-batch mean."""
    def loss_fn(out, m):
        diff = out - target[m * rows:(m + 1) * rows]
        return (diff ** 2).sum() / (BATCH * diff.shape[1])
    return loss_fn


def _reference_grads(reference, replicas):
    """The gradient data-parallel training should produce: the mean over replicas' batches."""
    reference.zero_grad()
    losses = []
    for r in range(replicas):
        x, y = _batch(r)
        loss = nn.functional.mse_loss(reference(x), y) / replicas
        loss.backward()
        losses.append(float(loss) * replicas)
    return losses


def _pipeline(world, stages, schedule, micro):
    grid = Grid.build(world, stages)
    model = _model()
    reference = copy.deepcopy(model)
    executor = PipelineExecutor.from_layers(grid, list(model), (WIDTHS[0],), schedule, micro)
    return grid, model, reference, executor


def _step(grid, executor, step=0):
    x, y = _batch(grid.replica, step)
    rows = BATCH // executor.micro_batches
    return executor.train_step(x if executor.stage.is_first else None,
                               _micro_mse(y, rows) if executor.stage.is_last else None, BATCH)


@pytest.mark.mpi(min_size=2)
def test_pipelined_loss_and_every_gradient_equal_the_unsharded_model():
    world = World()
    for stages, schedule, micro in _cases(world):
        grid, model, reference, executor = _pipeline(world, stages, schedule, micro)
        result = _step(grid, executor)
        losses = _reference_grads(reference, grid.replicas)
        case = f"P={stages} x {grid.replicas} replicas, {schedule}, M={micro}"
        assert result.loss == pytest.approx(losses[grid.replica], abs=TOL), case
        mine = {id(p) for p in executor.stage.parameters()}
        compared = 0
        for p, q in zip(model.parameters(), reference.parameters()):
            if id(p) in mine:
                np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=TOL, rtol=0,
                                           err_msg=case)
                compared += 1
        assert compared == len(mine) > 0
        # the 1F1B memory bound holds in practice, not just on paper
        assert executor.stage.peak_stash == executor.schedule().peak_stash(grid.stage), case
        assert executor.stage.stashed == 0


@pytest.mark.mpi(min_size=2)
def test_after_k_adam_steps_with_global_clipping_parameters_match_the_single_process_run():
    world = World()
    K = 4
    for stages in _grids(world):
        grid, model, reference, executor = _pipeline(world, stages, "1f1b", 2 * stages)
        opt = torch.optim.Adam(executor.stage.parameters(), lr=1e-2)
        ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
        for step in range(K):
            _step(grid, executor, step)
            norm = executor.clip_grad_norm_(0.05)  # small enough to bite on every step
            opt.step()

            ref_opt.zero_grad()
            for r in range(grid.replicas):
                x, y = _batch(r, step)
                (nn.functional.mse_loss(reference(x), y) / grid.replicas).backward()
            ref_norm = float(nn.utils.clip_grad_norm_(reference.parameters(), 0.05))
            ref_opt.step()
            assert norm == pytest.approx(ref_norm, rel=1e-5)
        mine = {id(p) for p in executor.stage.parameters()}
        for p, q in zip(model.parameters(), reference.parameters()):
            if id(p) in mine:
                np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=TOL, rtol=0)


@pytest.mark.mpi(min_size=2)
def test_forward_only_pass_equals_the_unsharded_model_on_every_stage():
    world = World()
    for stages in _grids(world):
        grid, model, reference, executor = _pipeline(world, stages, "1f1b", 1)
        x, _ = _batch(grid.replica)
        for micro in (1, 4):
            out = executor.forward(x if executor.stage.is_first else None, BATCH, micro,
                                   to_all=True)
            np.testing.assert_allclose(out.numpy(), reference(x).detach().numpy(), atol=TOL, rtol=0)


@pytest.mark.mpi(min_size=2)
def test_tags_keep_micro_batches_apart_and_a_wrong_size_is_a_clear_error():
    world = World()
    link = PipeLink(world.split(color=world.rank // 2))
    if world.size % 2 and world.rank == world.size - 1:
        return  # the odd rank out has no partner
    if link.stage == 0:
        link.send_forward(np.full(5, 1.0, np.float32), micro=1)  # sent out of order
        link.send_forward(np.full(5, 0.0, np.float32), micro=0)
        link.send_forward(np.arange(10, dtype=np.float32), micro=2)
        link.wait_sends()
    else:
        a = link.recv_forward(np.empty(5, np.float32), micro=0)
        b = link.recv_forward(np.empty(5, np.float32), micro=1)
        assert a.tolist() == [0.0] * 5 and b.tolist() == [1.0] * 5
        with pytest.raises(ShapeMismatch, match=r"expected the activation of micro-batch 2 from "
                                                r"stage 0 with shape \(3, 4\) \(12 floats\) but "
                                                r"10 floats arrived"):
            link.recv_forward(np.empty((3, 4), np.float32), micro=2)
        assert link.recv_forward(np.empty(10, np.float32), micro=2)[9] == 9.0
        with pytest.raises(TypeError, match="float32"):
            link.recv_forward(np.empty(10, np.float64), micro=3)


@pytest.mark.mpi(min_size=2)
def test_uneven_micro_batches_still_match_the_unsharded_model():
    """A PPO minibatch loses its autoreset steps, so its rows need not divide by M."""
    world = World()
    grid, model, reference, executor = _pipeline(world, world.size, "1f1b", world.size + 1)
    x, y = _batch(grid.replica)
    x, y = x[:BATCH - 1], y[:BATCH - 1]
    bounds = executor.micro_bounds(BATCH - 1, executor.micro_batches)

    def loss_fn(out, m):
        return ((out - y[bounds[m]:bounds[m + 1]]) ** 2).sum() / y.numel()

    result = executor.train_step(x if executor.stage.is_first else None,
                                 loss_fn if executor.stage.is_last else None, BATCH - 1)
    ref_loss = nn.functional.mse_loss(reference(x), y)
    ref_loss.backward()
    assert result.loss == pytest.approx(float(ref_loss), abs=TOL)
    mine = {id(p) for p in executor.stage.parameters()}
    for p, q in zip(model.parameters(), reference.parameters()):
        if id(p) in mine:
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=TOL, rtol=0)


def _rollout(rank):
    """A fake PPO rollout of rank ``rank``: row counts differ between ranks."""
    g = torch.Generator().manual_seed(rank)
    n = 10 + rank
    return (torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g).float(),
            torch.randn(n, generator=g))


def _pg_loss(act, adv):
    def loss_fn(out, rows):
        logp = torch.log_softmax(out[:, :2], -1).gather(1, act[rows].long()[:, None])[:, 0]
        value = out[:, 2]
        loss = -(logp * adv[rows]).mean() + 0.5 * (value ** 2).mean()
        return loss, {"value_mean": float(value.mean())}
    return loss_fn


@pytest.mark.mpi(min_size=2)
def test_ppo_pipeline_shard_equals_the_whole_model_on_the_pooled_batch():
    """The trainer's pipeline hook: pooled rollouts, a minibatch through the stages with PPO-style
    mean losses, global clipping, whole-model optimizer state, and published weights."""
    from types import SimpleNamespace

    import gymnasium as gym

    from mpirl.comm.collectives import check_in_sync
    from mpirl.models.actor_critic import ActorCritic
    from mpirl.optim import FlatAdam
    from mpirl.pipeline.shard import PipelineStage

    world = World()
    stages = 2 if world.size % 2 == 0 else 3
    cfg = SimpleNamespace(pipeline_stages=stages, pipeline_schedule="gpipe", micro_batches=3,
                          partition=None)
    torch.manual_seed(0)
    model = ActorCritic(4, gym.spaces.Discrete(2), (8, 8))
    reference = copy.deepcopy(model)
    shard = PipelineStage(cfg, world, model)
    replica, replicas = shard.grid.replica, shard.grid.replicas

    # pool: the rollouts of this pipeline's ranks, in stage order, on every stage
    obs, act, adv = shard.allgather_batch(*_rollout(world.rank))
    mine = [_rollout(replica * stages + s) for s in range(stages)]
    for got, want in zip((obs, act, adv), zip(*mine)):
        assert torch.equal(got, torch.cat(want))
    # each column travels in its own dtype: frames stay uint8, actions int64
    frames = torch.full((3 + world.rank, 4, 6, 6), world.rank, dtype=torch.uint8)
    actions = torch.arange(3 + world.rank) + 1000 * world.rank
    got_frames, got_actions = shard.allgather_batch(frames, actions)
    ranks = [replica * stages + s for s in range(stages)]
    assert got_frames.dtype == torch.uint8 and got_actions.dtype == torch.int64
    assert torch.equal(got_frames, torch.cat(
        [torch.full((3 + r, 4, 6, 6), r, dtype=torch.uint8) for r in ranks]))
    assert torch.equal(got_actions, torch.cat([torch.arange(3 + r) + 1000 * r for r in ranks]))
    seeds = shard.grid.pipe.allgather_obj(shard.shuffle_seed(0))
    assert len(set(seeds)) == 1  # every stage cuts the same minibatches

    def rows_of(n):
        return np.arange(n)[::-1][:-3].copy()  # a shuffled-looking minibatch, not all rows

    rows = rows_of(len(obs))
    if shard.grid.stage > 0:  # a disagreeing shuffler on later stages: stage 0's rows must win
        rows = np.random.default_rng(7).permutation(len(obs))[:len(rows)]
    loss, stats = shard.forward_backward(obs, rows, _pg_loss(act, adv))
    shard.grads.average()  # what --sync-mode allreduce does over the stage's replicas
    norm = shard.clip_(0.1)

    ref_losses = []
    for r in range(replicas):
        r_obs, r_act, r_adv = (torch.cat(t) for t in
                               zip(*[_rollout(r * stages + s) for s in range(stages)]))
        rows = rows_of(len(r_obs))
        r_loss, r_stats = _pg_loss(r_act, r_adv)(reference(r_obs[rows]), rows)
        (r_loss / replicas).backward()
        ref_losses.append((float(r_loss), r_stats))
    ref_norm = float(nn.utils.clip_grad_norm_(reference.parameters(), 0.1))
    assert loss == pytest.approx(ref_losses[replica][0], abs=TOL)
    assert stats["value_mean"] == pytest.approx(ref_losses[replica][1]["value_mean"], abs=TOL)
    assert norm == pytest.approx(ref_norm, rel=1e-5)
    stage_ids = {id(p) for p in shard.module.parameters()}
    for p, q in zip(model.parameters(), reference.parameters()):
        if id(p) in stage_ids:
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=TOL, rtol=0)

    # one Adam step each; allgather_model makes every rank's whole model the stepped reference
    optimizer = FlatAdam(shard.grads, lr=1e-2, eps=1e-5)
    optimizer.step()
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2, eps=1e-5)
    ref_opt.step()
    shard.allgather_model()
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=TOL, rtol=0)
    check_in_sync(world, model)

    # whole-model optimizer state: the reference's moments, in the whole model's order
    state = shard.optimizer_state(optimizer)
    ref_avg = torch.cat([ref_opt.state[q]["exp_avg"].reshape(-1) for q in reference.parameters()])
    np.testing.assert_allclose(state["exp_avg"].numpy(), ref_avg.numpy(), atol=1e-7, rtol=0)
    fresh = FlatAdam(shard.grads, lr=0.5)
    shard.load_optimizer(fresh, state)   # (a restored state is on every rank)
    for a, b in zip(fresh.state_tensors(), optimizer.state_tensors()):
        assert torch.equal(a, b)
    assert fresh.param_groups[0]["lr"] == 1e-2


@pytest.mark.mpi(min_size=2)
def test_the_nature_cnn_pipelined_equals_the_unsharded_network():
    """Pixels through a pipeline: uint8 frames into the first stage, 4-d activations between
    stages (channels-last inside a stage, sent contiguous), a boundary between the convolutions
    and the 512 features as the explicit partition asks; loss and gradients as one process's."""
    import gymnasium as gym

    from mpirl.models.nature_cnn import NatureCNNActorCritic

    world = World()
    stages = min(world.size, 5)
    partitions = {2: ["3,2", None], 3: ["3,1,1"], 4: ["1,1,1,2"]}.get(stages, [None])
    for spec in partitions:
        grid = Grid.build(world, stages)
        torch.manual_seed(0)
        model = NatureCNNActorCritic((4, 36, 36), gym.spaces.Discrete(3))
        reference = copy.deepcopy(model)
        executor = PipelineExecutor.from_layers(grid, list(model), model.in_shape, "1f1b",
                                                stages, spec=spec)
        g = torch.Generator().manual_seed(grid.replica)
        x = torch.randint(0, 256, (BATCH, 4, 36, 36), dtype=torch.uint8, generator=g)
        y = torch.randn(BATCH, 4, generator=g)
        result = executor.train_step(x if executor.stage.is_first else None,
                                     _micro_mse(y, BATCH // stages) if executor.stage.is_last
                                     else None, BATCH)
        loss = nn.functional.mse_loss(reference(x), y)
        loss.backward()
        assert result.loss == pytest.approx(float(loss), abs=TOL), spec
        mine = {id(p) for p in executor.stage.parameters()}
        for p, q in zip(model.parameters(), reference.parameters()):
            if id(p) in mine:
                np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=TOL,
                                           rtol=1e-4, err_msg=str(spec))
        shapes = grid.pipe.allgather_obj(executor.out_shape)
        if spec == "3,2":   # the boundary between the convolutions (flattened) and the features
            assert shapes[0] == (64,)
        if spec == "1,1,1,2":   # 4-d activations: after the first and second convolutions
            assert shapes[:2] == [(32, 8, 8), (64, 3, 3)]
