"""Collectives under pytest-mpi: gradient averaging, broadcasts, statistics, desync detection."""
import numpy as np
import pytest
import torch

from mpirl.comm import World
from mpirl.envs.make import make_vec
from mpirl.envs.normalize import ObsNormalizer, RewardScaler
from mpirl.envs.vec import VecEnv
from mpirl.optim import FlatAdam
from tests.flat import views_intact
from mpirl.comm.collectives import (DesyncError, FlatGradients, allreduce_mean_std,
                                    allreduce_sum, broadcast_state, check_in_sync, sync_params)

NPROCS = (2, 4)


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _batch(seed, n=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randn(n, 3, generator=g)


@pytest.mark.mpi(min_size=2)
def test_averaged_gradient_equals_single_process_gradient_of_concatenated_batch():
    world = World()
    model = _model(0)
    grads = FlatGradients(model.parameters(), world)
    x, y = _batch(100 + world.rank)
    torch.nn.functional.mse_loss(model(x), y).backward()
    grads.average()
    assert views_intact(grads)

    reference = _model(0)
    xs, ys = zip(*[_batch(100 + r) for r in range(world.size)])
    torch.nn.functional.mse_loss(reference(torch.cat(xs)), torch.cat(ys)).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=1e-6, rtol=0)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("nonblocking", [False, True])
def test_staged_averaging_equals_averaging_in_place(nonblocking):
    """The path a GPU without CUDA-aware MPI takes (copy to one host buffer, Allreduce there,
    copy back, scale) run on CPU tensors through the same code: bit for bit the in-place mean."""
    world = World()
    results = {}
    for path in ("host", "staged"):
        model = _model(0)
        grads = FlatGradients(model.parameters(), world, path=path)
        assert grads.path == path
        x, y = _batch(100 + world.rank)
        torch.nn.functional.mse_loss(model(x), y).backward()
        grads.average_nonblocking() if nonblocking else grads.average()
        assert views_intact(grads)
        results[path] = grads.flat.clone()
    assert grads._stage.data_ptr() != grads.flat.data_ptr()   # staged: a buffer of its own
    assert torch.equal(results["host"], results["staged"])


@pytest.mark.mpi(min_size=2)
def test_params_and_optimizer_state_broadcast_then_stay_identical():
    world = World()
    model = _model(world.rank)  # deliberately different on each rank
    grads = FlatGradients(model.parameters(), world)
    opt = FlatAdam(grads, lr=1e-2 * (1 + world.rank))  # as after a resume
    opt.exp_avg.fill_(world.rank)                      # moments that differ too
    sync_params(world, model, opt)
    check_in_sync(world, model)
    assert opt.param_groups[0]["lr"] == 1e-2   # root's: the ranks step alike
    for step in range(5):
        grads.zero()
        x, y = _batch(1000 * step + world.rank)
        torch.nn.functional.mse_loss(model(x), y).backward()
        grads.average()
        grads.clip_(0.5)
        opt.step()
    check_in_sync(world, model)
    states = world.allgather_obj([t.numpy().copy() for t in opt.state_tensors()])
    for other in states[1:]:
        for a, b in zip(states[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.mpi(min_size=2)
def test_desync_check_fires_when_one_rank_is_perturbed():
    world = World()
    model = _model(0)
    check_in_sync(world, model)
    if world.rank == world.size - 1:
        with torch.no_grad():
            next(model.parameters())[0, 0] += 1e-7
    with pytest.raises(DesyncError, match=f"rank\\(s\\) \\[{world.size - 1}\\]"):
        check_in_sync(world, model)


@pytest.mark.mpi(min_size=2)
def test_global_statistics_equal_those_of_all_the_data():
    world = World()
    rng = np.random.default_rng(world.rank)
    x = rng.normal(world.rank, 1 + world.rank, size=10 + 7 * world.rank)
    mean, std = allreduce_mean_std(world, x)
    every = np.concatenate(world.allgather_obj(x))
    assert mean == pytest.approx(every.mean(), abs=1e-12)
    assert std == pytest.approx(every.std(), abs=1e-12)
    assert allreduce_sum(world, [1.0])[0] == world.size


@pytest.mark.mpi(min_size=2)
def test_merged_observation_and_return_statistics_equal_those_of_all_the_data():
    """A rank's vector env (obs normaliser and reward scaler) after one rollout on every rank:
    the merged statistics are those of every rank's data in one process (1e-6)."""
    world = World()
    envs = VecEnv(make_vec("Pendulum-v1", 3, "sync"), seed=world.rank_seed(0),
                  normalizer=ObsNormalizer((3,)), reward_scaler=RewardScaler(3, gamma=0.95))
    rng = np.random.default_rng(world.rank)
    observations, returns, running = [], [], np.zeros(3)
    for _ in range(250):                          # past Pendulum's 200-step time limit
        observations.append(envs.raw_obs.copy())
        envs.observe()
        valid = envs.valid.copy()
        raw_reward = []
        original = envs.envs.step
        envs.envs.step = lambda a: (lambda out: (raw_reward.append(out[1]), out)[1])(original(a))
        _, terminated, truncated, _ = envs.step(rng.uniform(-2, 2, (3, 1)).astype(np.float32))
        envs.envs.step = original
        running = np.where(valid, running * 0.95 + raw_reward[0], running)
        returns.extend(running[valid])
        running[terminated | truncated] = 0.0
    envs.allreduce_statistics(world)
    all_obs = np.concatenate(world.allgather_obj(np.concatenate(observations))).astype(np.float64)
    all_returns = np.concatenate(world.allgather_obj(np.asarray(returns)))
    np.testing.assert_allclose(envs.normalizer.rms.mean, all_obs.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(envs.normalizer.rms.var, all_obs.var(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(envs.reward_scaler.rms.mean, all_returns.mean(), rtol=1e-6)
    np.testing.assert_allclose(envs.reward_scaler.rms.var, all_returns.var(), rtol=1e-6)
    assert envs.reward_scaler.rms.count == len(all_returns) < 250 * 3 * world.size


@pytest.mark.mpi(min_size=2)
def test_rank_seeds_differ_and_are_reproducible():
    world = World()
    seeds = world.allgather_obj(world.rank_seed(7))
    assert len(set(seeds)) == world.size
    assert world.rank_seed(7) == World().rank_seed(7)
    assert world.rank_seed(8) != world.rank_seed(7)


# Rows of every kind the exchanges carry: scalars, sub-arrays, records of a structured dtype.
ROW_KINDS = {"scalar": ((), np.int64), "subarray": ((3,), np.float64),
             "record": ((), np.dtype([("obs", np.float32, (2,)), ("action", np.int8)]))}


def _rows(rank, n, kind):
    """n rows of arbitrary bytes (compared as bytes: a float field may hold a NaN pattern)."""
    shape, dtype = ROW_KINDS[kind]
    nbytes = n * np.dtype(dtype).itemsize * int(np.prod(shape))
    raw = np.random.default_rng(rank).integers(0, 256, nbytes, dtype=np.uint8)
    return raw.view(dtype).reshape((n, *shape))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("kind", sorted(ROW_KINDS))
def test_allgatherv_and_alltoallv_deliver_the_rows_a_naive_pickled_exchange_does(kind):
    from mpirl.comm.exchange import allgatherv, alltoallv
    world = World()
    mine = _rows(world.rank, world.rank % 3, kind)   # uneven counts, rank 0 sends none
    everyone, counts = allgatherv(world, mine)
    expected = world.comm.allgather(mine)
    assert counts.tolist() == [len(rows) for rows in expected]
    assert everyone.tobytes() == np.concatenate(expected).tobytes()
    # Alltoallv: rank r sends its k-th row to rank k % size
    send = np.concatenate([mine[[i for i in range(len(mine)) if i % world.size == k]]
                           for k in range(world.size)])
    send_counts = np.array([len(range(k, len(mine), world.size)) for k in range(world.size)])
    received = alltoallv(world, send, send_counts)
    per_source = world.comm.alltoall([mine[k::world.size] for k in range(world.size)])
    assert received.tobytes() == np.concatenate(per_source).tobytes()


@pytest.mark.mpi(min_size=2)
def test_a_nested_state_broadcast_from_root_arrives_whole_on_every_rank():
    """comm.broadcast_state (a restored checkpoint's shared state): tensors of several dtypes,
    dicts, lists and plain values, from rank 0 to all; what other ranks held is ignored."""
    world = World()
    g = torch.Generator().manual_seed(world.rank)   # every rank makes a different state
    state = {"model": {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g)},
             "optimizer": {"step": torch.tensor([7.0 + world.rank], dtype=torch.float64),
                           "lr": 3e-4 * (1 + world.rank)},
             "rows": [torch.arange(5 + world.rank), {"count": world.rank, "name": "x"}],
             "empty": torch.zeros(0)}
    got = broadcast_state(world, state if world.rank == 0 else None)
    root = world.bcast_obj({"w": state["model"]["w"].numpy(), "b": state["model"]["b"].numpy(),
                            "step": state["optimizer"]["step"].numpy(),
                            "rows": state["rows"][0].numpy(), "lr": state["optimizer"]["lr"]})
    np.testing.assert_array_equal(got["model"]["w"].numpy(), root["w"])
    np.testing.assert_array_equal(got["model"]["b"].numpy(), root["b"])
    assert got["optimizer"]["step"].dtype == torch.float64
    np.testing.assert_array_equal(got["optimizer"]["step"].numpy(), root["step"])
    assert got["optimizer"]["lr"] == root["lr"]
    np.testing.assert_array_equal(got["rows"][0].numpy(), root["rows"])
    assert got["rows"][0].dtype == torch.int64 and got["rows"][1] == {"count": 0, "name": "x"}
    assert got["empty"].shape == (0,)
