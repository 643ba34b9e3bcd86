"""SAC's and TD3's data-parallel gradient step under pytest-mpi (--algo sac, td3; issue #22): the
gradient every rank's half of a global batch gives, averaged in the one Allreduce of the flat
buffer, is the gradient of the concatenated batch in one process; and FlatAdam's per-part steps
after that average keep every replica bit-identical.

The reference replays the ranks' noise: each rank draws its reparameterisation (SAC) or target
smoothing (TD3) noise from its own torch.Generator, so a single process with the whole batch
recomputes each rank's draws with the same seeds and splices them into the batch's draws, row for
row (one call of torch.randn per rank's call, concatenated). It is also checked against the mean of
the two halves' losses, the same quantity taken the other way."""
import copy
from unittest import mock

import gymnasium as gym
import numpy as np
import pytest
import torch

from mpirl.algos.offpolicy import Transitions
from mpirl.algos.sac import sac_losses
from mpirl.algos.td3 import td3_losses
from mpirl.comm import World
from mpirl.comm.collectives import FlatGradients, check_in_sync, param_checksum
from mpirl.models.continuous import OffPolicyAgent
from mpirl.optim import FlatAdam, module_parts

NPROCS = (2,)
TIMEOUT = 120

OBS_DIM, ACTION_DIM, BATCH = 3, 2, 16          # BATCH: the global batch, split over the ranks
# asymmetric bounds, so that both the scale and the bias of the squash matter
SPACE = gym.spaces.Box(low=np.array([-2.0, -1.0], np.float32),
                       high=np.array([2.0, 3.0], np.float32), dtype=np.float32)
POLICY_NOISE, NOISE_CLIP = 0.2, 0.5
ATOL = RTOL = 1e-6


def _agent(algo: str) -> OffPolicyAgent:
    torch.manual_seed(0)
    agent = OffPolicyAgent(algo, OBS_DIM, SPACE, hidden_sizes=(16, 16))
    if hasattr(agent, "temperature"):      # away from alpha = 1, so alpha's factor is exercised
        with torch.no_grad():
            agent.temperature.log_alpha.fill_(-0.7)
    return agent


def _targets(agent: OffPolicyAgent) -> dict:
    """Target networks that differ from the online ones (as after some Polyak steps)."""
    g = torch.Generator().manual_seed(7)
    targets = {"target_critic": copy.deepcopy(agent.critic)}
    if agent.algo == "td3":
        targets["target_actor"] = copy.deepcopy(agent.actor)
    with torch.no_grad():
        for module in targets.values():
            for p in module.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return targets


def _batch(seed: int = 3, size: int = BATCH) -> Transitions:
    """A fixed global batch as the replay memory would give it: raw float32 tensors, some
    episode ends, n-step discounts and prioritized replay's (non-uniform) weights."""
    g = torch.Generator().manual_seed(seed)
    low, high = torch.as_tensor(SPACE.low), torch.as_tensor(SPACE.high)
    obs = torch.randn(size, OBS_DIM, generator=g)
    actions = low + (high - low) * torch.rand(size, ACTION_DIM, generator=g)
    rewards = torch.randn(size, generator=g)
    next_obs = torch.randn(size, OBS_DIM, generator=g)
    dones = (torch.rand(size, generator=g) < 0.25).float()
    discounts = torch.where(torch.rand(size, generator=g) < 0.5, torch.tensor(0.99),
                            torch.tensor(0.99 ** 3))
    weights = 0.5 + torch.rand(size, generator=g)
    return Transitions(obs, actions, rewards, next_obs, dones, discounts, weights)


def _rows(batch: Transitions, rank: int, size: int) -> Transitions:
    n = BATCH // size
    part = slice(rank * n, (rank + 1) * n)
    return Transitions(*(getattr(batch, name)[part] for name in
                         ("obs", "actions", "rewards", "next_obs", "dones", "discounts",
                          "weights")))


def _generator(rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 + rank)


def _losses(algo: str):
    if algo == "sac":
        return sac_losses
    return lambda agent, targets, batch, update_actor, generator: td3_losses(
        agent, targets, batch, update_actor, generator, POLICY_NOISE, NOISE_CLIP)


def _recorded_noise(algo, update_actor, rank, size) -> list[torch.Tensor]:
    """The torch.randn draws rank ``rank``'s loss takes from its generator, in order."""
    draws, randn = [], torch.randn

    def recording(*args, **kwargs):
        out = randn(*args, **kwargs)
        draws.append(out.clone())
        return out

    agent = _agent(algo)
    targets, half, generator = _targets(agent), _rows(_batch(), rank, size), _generator(rank)
    with mock.patch.object(torch, "randn", recording):
        _losses(algo)(agent, targets, half, update_actor, generator)
    return draws


def _flat_grad(agent) -> np.ndarray:
    """The gradients in the flat buffer's order (a parameter the loss did not reach: zeros)."""
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1)
                      for p in agent.parameters()]).numpy().copy()


def _reference_gradient(algo: str, update_actor: bool, size: int) -> np.ndarray:
    """In one process, without MPI: the gradient of the loss of the whole batch, each row with
    the noise its rank drew."""
    per_rank = [_recorded_noise(algo, update_actor, r, size) for r in range(size)]
    assert len({len(d) for d in per_rank}) == 1
    spliced = iter([torch.cat(draws) for draws in zip(*per_rank)])
    randn = torch.randn

    def replaying(shape, *args, generator=None, dtype=None, **kwargs):
        noise = next(spliced)
        assert tuple(noise.shape) == tuple(shape), (noise.shape, shape)
        assert generator is not None, "the loss drew noise without its generator"
        return noise.to(dtype) if dtype is not None else noise

    agent = _agent(algo)
    targets, batch = _targets(agent), _batch()
    with mock.patch.object(torch, "randn", replaying):
        loss, td_abs, _ = _losses(algo)(agent, targets, batch, update_actor,
                                        torch.Generator().manual_seed(0))
    assert next(spliced, None) is None, "the whole batch drew less noise than its halves"
    assert td_abs.shape == (BATCH,)
    loss.backward()
    assert torch.randn is randn
    return _flat_grad(agent)


def _halves_gradient(algo: str, update_actor: bool, size: int) -> np.ndarray:
    """In one process: the gradient of the mean of the ranks' losses, each recomputed from its
    own half with its own generator (equal halves: the same as the whole batch's mean loss)."""
    agent = _agent(algo)
    targets = _targets(agent)
    losses = [_losses(algo)(agent, targets, _rows(_batch(), r, size), update_actor,
                            _generator(r))[0] for r in range(size)]
    torch.stack(losses).mean().backward()
    return _flat_grad(agent)


def _distributed_gradient(world: World, algo: str, update_actor: bool):
    """This rank's half, backward into the flat buffer, one Allreduce."""
    agent = _agent(algo)
    targets = _targets(agent)
    grads = FlatGradients(agent.parameters(), world)
    grads.zero()
    loss, td_abs, stats = _losses(algo)(agent, targets, _rows(_batch(), world.rank, world.size),
                                        update_actor, _generator(world.rank))
    assert td_abs.shape == (BATCH // world.size,)
    loss.backward()
    local = grads.flat.numpy().copy()
    grads.average()
    return agent, local, grads.flat.numpy().copy(), stats


def _part_slices(agent) -> dict:
    return {name: slice(*span) for name, span in module_parts(agent, agent.parts()).items()}


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("update_actor", [True, False], ids=["actor-step", "critic-only"])
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_averaged_gradient_is_the_gradient_of_the_concatenated_batch(algo, update_actor):
    world = World()
    assert BATCH % world.size == 0
    agent, local, averaged, stats = _distributed_gradient(world, algo, update_actor)
    reference = _reference_gradient(algo, update_actor, world.size)
    halves = _halves_gradient(algo, update_actor, world.size)

    np.testing.assert_allclose(averaged, reference, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(halves, reference, atol=ATOL, rtol=RTOL)
    # the average is the same on every rank, bit for bit; the halves' gradients were not
    every = world.allgather_obj((local, averaged))
    assert all(np.array_equal(a, every[0][1]) for _, a in every)
    assert not np.array_equal(every[0][0], every[1][0]), "the ranks' halves gave one gradient"
    # the test means something: each part that the step trains has a gradient, the others none
    parts = _part_slices(agent)
    assert set(parts) == ({"critic", "actor", "temperature"} if algo == "sac"
                          else {"critic", "actor"})
    for name, part in parts.items():
        trained = name == "critic" or update_actor
        assert np.any(reference[part] != 0) == trained, (name, update_actor)
    assert ("actor_loss" in stats) == update_actor
    if algo == "sac" and update_actor:
        assert "entropy" in stats


@pytest.mark.mpi(min_size=2)
def test_sac_reference_depends_on_the_rank_noise():
    """The splice is not vacuous: other noise gives another gradient (so matching it above
    means each rank drew its own generator's noise, row for row)."""
    world = World()
    _, _, averaged, _ = _distributed_gradient(world, "sac", True)
    agent = _agent("sac")
    targets = _targets(agent)
    loss, _, _ = sac_losses(agent, targets, _batch(), True, torch.Generator().manual_seed(1000))
    loss.backward()
    assert not np.allclose(_flat_grad(agent), averaged, atol=1e-4)


def _train(world: World, algo: str, steps: int = 6):
    """A few of the Learner's steps by hand: this rank's own batch each step (different on each
    rank), one Allreduce, then FlatAdam's parts: the critic every step, the actor (and SAC's
    temperature) every second, as TD3's delayed actor."""
    agent = _agent(algo)
    targets = _targets(agent)
    grads = FlatGradients(agent.parameters(), world)
    optimizer = FlatAdam(grads, lr=3e-3, parts=module_parts(agent, agent.parts()))
    parts = _part_slices(agent)
    generator = _generator(world.rank)
    flat = lambda: torch.cat([p.detach().reshape(-1) for p in agent.parameters()]).clone()
    for step in range(steps):
        update_actor = step % 2 == 0
        grads.zero()
        batch = _batch(seed=100 * step + world.rank, size=BATCH // world.size)
        loss, _, _ = _losses(algo)(agent, targets, batch, update_actor, generator)
        loss.backward()
        grads.average()
        before = flat()
        optimizer.step(*[p for p in agent.parts() if update_actor or p == "critic"])
        after = flat()
        for name, part in parts.items():   # a part left out of the step does not move
            moved = not torch.equal(before[part], after[part])
            assert moved == (update_actor or name == "critic"), (step, name)
    return agent, optimizer


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_flat_adam_parts_after_the_average_keep_replicas_bit_identical(algo):
    world = World()
    agent, optimizer = _train(world, algo)
    check_in_sync(world, agent)                      # raises DesyncError on a difference
    mine = (param_checksum(agent), optimizer.step_count.numpy().tobytes(),
            optimizer.exp_avg.numpy().tobytes(), optimizer.exp_avg_sq.numpy().tobytes())
    every = world.allgather_obj(mine)
    assert all(e == every[0] for e in every), "parameters or Adam moments differ between ranks"
    # the critic stepped 6 times, the actor (and temperature) 3: each part ages on its own
    counts = dict(zip(agent.parts(), optimizer.step_count.tolist()))
    assert counts == ({"critic": 6.0, "actor": 3.0, "temperature": 3.0} if algo == "sac"
                      else {"critic": 6.0, "actor": 3.0})
    # and training moved the replica away from where it started
    assert param_checksum(agent) != param_checksum(_agent(algo))
