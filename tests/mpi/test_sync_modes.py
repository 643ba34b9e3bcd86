"""The --sync-mode strategies under pytest-mpi, each against a reference computed another way:
overlap against the blocking Allreduce, local-sgd against allreduce and against averages and
distances computed naively from every rank's gathered parameters."""
import numpy as np
import pytest
import torch

from mpirl.comm import World
from mpirl.comm.collectives import FlatGradients, check_in_sync, sync_params
from mpirl.comm.sync import AllreduceSync, LocalSGDSync, OverlapSync, replica_drift
from mpirl.optim import FlatAdam
from tests.flat import views_intact

NPROCS = (2, 4)
TIMEOUT = 120


def _model(seed: int = 0, unused: bool = False) -> torch.nn.Module:
    """Three layers; with ``unused``, plus a parameter the forward never touches: its gradient
    hook never fires, so its bucket can only start in gradients_ready. (A module's own
    parameters come before its children's, so it is the first in the flat buffer.)"""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32),
                                torch.nn.Tanh(), torch.nn.Linear(32, 3))
    if unused:
        model.unused = torch.nn.Parameter(torch.ones(5))
    return model


def _loss(model, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)
    return torch.nn.functional.mse_loss(model(x), y)


def _gathered_params(world, model) -> np.ndarray:
    """(ranks, n) array of every rank's flat parameters: the naive reference."""
    mine = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()
    return np.stack(world.allgather_obj(mine))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("unused", [False, True], ids=["all-used", "one-unused"])
def test_overlap_averages_gradients_exactly_like_allreduce(unused):
    world = World()
    reference, model = _model(unused=unused), _model(unused=unused)
    ref_grads = FlatGradients(reference.parameters(), world)
    grads = FlatGradients(model.parameters(), world)
    allreduce = AllreduceSync(world, ref_grads)
    overlap = OverlapSync(world, grads, bucket_mb=100 * 4 / 2**20)  # ~100 floats: 3+ buckets
    assert len(overlap.buckets) >= 3
    for step in range(3):  # several minibatches: the bucket bookkeeping must reset each time
        seed = 1000 * step + world.rank
        for g, m in ((ref_grads, reference), (grads, model)):
            g.zero()
            _loss(m, seed).backward()
        started_during_backward = overlap._next
        allreduce.gradients_ready()
        overlap.gradients_ready()
        np.testing.assert_allclose(grads.flat.numpy(), ref_grads.flat.numpy(), atol=1e-6, rtol=0)
        # hooks sent every bucket while backward ran, except the one holding the unused parameter
        assert started_during_backward == len(overlap.buckets) - unused
        assert views_intact(grads)
    overlap.close()


@pytest.mark.mpi(min_size=2)
def test_overlap_refuses_a_second_backward_into_buckets_in_flight():
    world = World()
    model = _model()
    grads = FlatGradients(model.parameters(), world)
    overlap = OverlapSync(world, grads, bucket_mb=1.0)
    _loss(model, world.rank).backward()       # the one bucket is now in flight
    with pytest.raises(RuntimeError, match="already in flight"):
        _loss(model, world.rank).backward()
    overlap.gradients_ready()                 # still completes: every rank started the same
    overlap.close()


@pytest.mark.mpi(min_size=2)
def test_overlap_buckets_tile_the_flat_buffer_back_to_front():
    world = World()
    model = _model()
    grads = FlatGradients(model.parameters(), world)
    buckets = OverlapSync(world, grads, bucket_mb=1000 * 4 / 2**20).buckets
    assert buckets[0][1] == grads.numel and buckets[-1][0] == 0
    for (lo, _), (_, hi) in zip(buckets, buckets[1:]):
        assert hi == lo        # contiguous, no gaps, no overlaps, last parameters first
    ends = set(np.cumsum([0] + [p.numel() for p in grads.params]).tolist())
    assert all(lo in ends and hi in ends for lo, hi in buckets)   # whole parameters only
    one = OverlapSync(world, FlatGradients(_model().parameters(), world), bucket_mb=1.0)
    assert one.buckets == [(0, grads.numel)]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_local_sgd_with_k1_matches_allreduce_for_sgd(momentum):
    """Averaging gradients then stepping equals stepping then averaging parameters (and the
    momentum buffers) when the step is linear in the gradient: SGD, with or without momentum."""
    world = World()
    reference, model = _model(), _model()
    ref_grads = FlatGradients(reference.parameters(), world)
    grads = FlatGradients(model.parameters(), world)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=momentum)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    allreduce = AllreduceSync(world, ref_grads)
    local = LocalSGDSync(world, grads, model, opt, sync_every=1)
    for update in range(1, 6):
        seed = 1000 * update + world.rank
        for g, m, o, sync in ((ref_grads, reference, ref_opt, allreduce),
                              (grads, model, opt, local)):
            g.zero()
            _loss(m, seed).backward()
            sync.gradients_ready()
            o.step()
            metrics = sync.end_update(update)
        assert metrics["drift"] > 0 and local.replicas_identical
        for p, q in zip(model.parameters(), reference.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-6, rtol=0)
            if momentum:   # the averaged buffers equal the one built from averaged gradients
                np.testing.assert_allclose(opt.state[p]["momentum_buffer"].numpy(),
                                           ref_opt.state[q]["momentum_buffer"].numpy(),
                                           atol=1e-6, rtol=0)
    check_in_sync(world, model)


@pytest.mark.mpi(min_size=2)
def test_local_sgd_drift_is_positive_between_averagings_and_zero_right_after():
    world = World()
    model = _model(seed=world.rank)      # different everywhere until rank 0's copy is broadcast
    grads = FlatGradients(model.parameters(), world)
    optimizer = FlatAdam(grads, lr=1e-2)
    sync_params(world, model, optimizer)
    local = LocalSGDSync(world, grads, model, optimizer, sync_every=3)

    def naive_drift() -> float:
        every = _gathered_params(world, model)
        mean = every.mean(axis=0)
        return float(np.mean([np.linalg.norm(p - mean) for p in every]) / np.linalg.norm(mean))

    def naive_moments() -> np.ndarray:
        return np.stack(world.allgather_obj(optimizer.exp_avg_sq.numpy().copy())).mean(axis=0)

    assert naive_drift() == 0.0 and local.replicas_identical
    for update in range(1, 7):
        grads.zero()
        _loss(model, 1000 * update + world.rank).backward()
        local.gradients_ready()
        optimizer.step()
        assert not local.replicas_identical
        before, moments = naive_drift(), naive_moments()
        assert before > 0
        metrics = local.end_update(update)
        if update % 3:
            assert metrics == {} and not local.replicas_identical
            assert naive_drift() == pytest.approx(before, abs=1e-12)   # nothing moved
        else:
            assert metrics["drift"] == pytest.approx(before, rel=1e-4)  # taken just before
            assert naive_drift() == 0.0 and local.replicas_identical
            check_in_sync(world, model)                                 # bit-identical
            np.testing.assert_allclose(optimizer.exp_avg_sq.numpy(), moments, rtol=1e-5,
                                       atol=1e-12)                      # moments averaged too
            every = np.stack(world.allgather_obj(optimizer.exp_avg.numpy().copy()))
            assert (every == every[0]).all()


@pytest.mark.mpi(min_size=2)
def test_replica_drift_is_the_mean_relative_distance_from_the_average():
    world = World()
    mean = torch.full((4,), 2.0)             # ||mean|| = 4
    mine = mean.clone()
    mine[0] += world.rank                    # rank r sits at distance r
    expected = np.mean(np.arange(world.size)) / 4.0
    assert replica_drift(world, mine, mean) == pytest.approx(expected, rel=1e-12)
