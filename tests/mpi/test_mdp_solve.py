"""Distributed value / Q-value / policy iteration under pytest-mpi: every rank count gives the
single-process reference's answer (1 rank is covered in tests/unit/test_mdp.py)."""
import time

import gymnasium as gym
import numpy as np
import pytest
from mpi4py import MPI

from mpirl.comm import World
from mpirl.comm.blocks import Blocks
from mpirl.comm.shared_blocks import SharedBlocks
from mpirl.comm.exchange import allgatherv
from mpirl.mdp import GridWorld, RandomMDP, load_gym, solve
from mpirl.mdp.backup import Backup
from mpirl.mdp.solve import policy_iteration, q_value_iteration, value_iteration
from mpirl.mdp.evaluate import evaluate_in_env, evaluate_in_model
from tests import mdp_reference as ref

NPROCS = (2, 3, 4)
TIMEOUT = 120


def _frozenlake8x8():
    P = gym.make("FrozenLake-v1", map_name="8x8").unwrapped.P
    return load_gym("FrozenLake-v1", {"map_name": "8x8"}), ref.dense_from_P(P, 64, 4)


def _random():
    source = RandomMDP(97, 3, 5, seed=11)  # 97 states: uneven slices at 2, 3 and 4 ranks
    return source, ref.dense_from_rows(source.rows(0, 97))


CASES = {"frozenlake8x8": _frozenlake8x8, "random": _random}


# How ranks are grouped into "nodes" for SharedBlocks: by shared memory (all ranks here), or
# simulated, so that the leaders' Allgatherv between nodes runs on one machine.
NODES = {"one-node": None, "pairs": lambda rank: rank // 2, "one-per-rank": lambda rank: rank}
SPLITS = {"allgatherv": lambda world, n: Blocks(world, n),
          **{f"shared-{name}": (lambda node_of: lambda world, n: SharedBlocks(world, n, node_of))(f)
             for name, f in NODES.items()}}


@pytest.mark.mpi(min_size=2)
def test_blocks_split_evenly_in_rank_order_and_allgather_in_place():
    world = World()
    blocks = Blocks(world, 10)
    spans = world.allgather_obj((blocks.lo, blocks.hi))
    assert spans[0][0] == 0 and spans[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert max(h - l for l, h in spans) - min(h - l for l, h in spans) <= 1
    full = np.full((10, 3), -1.0)
    full[blocks.lo:blocks.hi] = np.arange(blocks.lo, blocks.hi)[:, None] * [1, 10, 100]
    blocks.allgather_inplace(full)
    np.testing.assert_array_equal(full, np.arange(10)[:, None] * [1, 10, 100])
    with pytest.raises(ValueError, match="every rank needs one"):
        Blocks(world, world.size - 1)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("split", sorted(SPLITS))
def test_every_rank_sees_every_block_of_the_split_vectors_after_each_exchange(split):
    world = World()
    blocks = SPLITS[split](world, 11)
    # one rank per node shares nothing: it keeps private vectors
    assert blocks.shared == (split.startswith("shared") and split != "shared-one-per-rank")
    V, V_next = blocks.vectors(2)
    np.testing.assert_array_equal(V, 0.0)
    for sweep in range(1, 4):  # the two buffers take turns, as in value iteration
        V_next[blocks.lo:blocks.hi] = sweep * 100 + np.arange(blocks.lo, blocks.hi)
        blocks.allgather_inplace(V_next)
        np.testing.assert_array_equal(V_next, sweep * 100 + np.arange(11))
        V, V_next = V_next, V
    again = blocks.vectors(2)   # the same memory, zero again: a second solve touches no new pages
    assert {v.ctypes.data for v in again} == {V.ctypes.data, V_next.ctypes.data}
    np.testing.assert_array_equal(again, 0.0)
    blocks.free()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("split", sorted(SPLITS))
def test_vectors_are_not_zeroed_for_reuse_while_a_rank_still_reads_them(split):
    world = World()
    blocks = SPLITS[split](world, 8)
    (V,) = blocks.vectors(1)
    V[blocks.lo:blocks.hi] = 1.0 + np.arange(blocks.lo, blocks.hi)
    blocks.allgather_inplace(V)
    if world.is_root:
        time.sleep(0.3)   # a slow reader: the others ask for the vectors again meanwhile
        np.testing.assert_array_equal(V, 1.0 + np.arange(8))
    (again,) = blocks.vectors(1)
    np.testing.assert_array_equal(again, 0.0)
    blocks.free()


@pytest.mark.mpi(min_size=2)
def test_ranks_of_one_node_share_one_vector():
    world = World()
    blocks = SharedBlocks(world, 8)
    (V,) = blocks.vectors(1)
    if world.is_root:
        V[-1] = 42.0  # outside rank 0's block: only shared memory carries it to the others
    blocks.allgather_inplace(V)
    assert V[-1] == 42.0
    blocks.free()


@pytest.mark.mpi(min_size=3)  # rank % 2 puts ranks 0 and 2 on one node, 1 on another
def test_nodes_whose_ranks_are_not_consecutive_fall_back_to_allgatherv(capfd):
    world = World()
    blocks = SharedBlocks(world, 9, node_of=lambda rank: rank % 2)  # round-robin mapping
    assert not blocks.shared
    V, = blocks.vectors(1)
    V[blocks.lo:blocks.hi] = np.arange(blocks.lo, blocks.hi)
    blocks.allgather_inplace(V)
    np.testing.assert_array_equal(V, np.arange(9))
    blocks.free()
    warned = "not consecutive" in capfd.readouterr().err
    assert warned == world.is_root  # once, from rank 0


@pytest.mark.mpi(min_size=2)
def test_without_room_in_dev_shm_the_vectors_are_private_and_still_exchanged(monkeypatch, capfd):
    from mpirl.comm import shared_blocks
    world = World()
    blocks = SharedBlocks(world, 9)
    assert blocks.shared
    monkeypatch.setattr(shared_blocks, "shm_room", lambda: 9 * 8 - 1.0)  # a byte short of one
    V, = blocks.vectors(1)
    assert not blocks.shared
    V[blocks.lo:blocks.hi] = np.arange(blocks.lo, blocks.hi)
    blocks.allgather_inplace(V)
    np.testing.assert_array_equal(V, np.arange(9))
    blocks.free()
    assert ("no room" in capfd.readouterr().err) == world.is_root


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("method", ["value", "q", "policy"])
def test_every_exchange_gives_the_single_process_answer(split, method):
    world = World()
    source, (C, R) = _random()
    gamma, tol = 0.9, 1e-9
    blocks = SPLITS[split](world, source.n_states)
    run = {"value": value_iteration, "q": q_value_iteration, "policy": policy_iteration}[method]
    sol = run(blocks, Backup(source.rows(blocks.lo, blocks.hi)), gamma, tol, 10_000)
    assert sol.exchange == ("shared" if blocks.shared else "allgatherv")
    blocks.free()
    V_star, _ = ref.optimal_values(C, R, gamma)
    if method == "policy":
        np.testing.assert_allclose(sol.V, V_star, rtol=0, atol=tol / (1 - gamma))
    else:
        on = "V" if method == "value" else "Q"
        V, _, sweeps, _ = ref.value_iteration(C, R, gamma, tol, on=on)
        assert sol.sweeps == sweeps
        np.testing.assert_allclose(sol.V, V, rtol=0, atol=1e-10)
    every = world.allgather_obj(sol.V.tobytes())
    assert all(v == every[0] for v in every)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", ["value", "q"])
@pytest.mark.parametrize("exchange", ["shared", "allgatherv"])
def test_distributed_iteration_equals_single_process_reference(case, method, exchange):
    world = World()
    source, (C, R) = CASES[case]()
    gamma, tol = 0.9, 1e-9
    sol = solve(world, source, method, gamma, tol, exchange=exchange)
    assert sol.exchange == exchange
    V, Q, sweeps, residual = ref.value_iteration(C, R, gamma, tol, on="V" if method == "value" else "Q")
    assert sol.converged and sol.sweeps == sweeps
    assert sol.residual == pytest.approx(residual, abs=1e-12)
    np.testing.assert_allclose(sol.V, V, rtol=0, atol=1e-10)
    policy = allgatherv(world, sol.policy)[0]
    np.testing.assert_array_equal(policy, Q.argmax(axis=1))
    if method == "q":
        np.testing.assert_allclose(allgatherv(world, sol.Q)[0], Q, rtol=0, atol=1e-10)
    # every rank ends with the same V, bit for bit
    every = world.allgather_obj(sol.V.tobytes())
    assert all(v == every[0] for v in every)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("case", sorted(CASES))
def test_distributed_policy_iteration_finds_the_optimal_values(case):
    world = World()
    source, (C, R) = CASES[case]()
    gamma, tol = 0.9, 1e-9
    sol = solve(world, source, "policy", gamma, tol)
    assert sol.converged and sol.policy_iterations >= 2
    V_star, _ = ref.optimal_values(C, R, gamma)
    np.testing.assert_allclose(sol.V, V_star, rtol=0, atol=tol / (1 - gamma))
    assert ref.bellman_residual(C, R, gamma, sol.V) < tol
    assert sol.residual == pytest.approx(ref.bellman_residual(C, R, gamma, sol.V), abs=1e-12)


@pytest.mark.mpi(min_size=2)
def test_evaluation_split_over_ranks_equals_one_rank_doing_every_episode():
    world, alone = World(), World(MPI.COMM_SELF)
    mdp = load_gym("FrozenLake-v1")
    sol = solve(world, mdp, "value", 0.99, 1e-8)
    policy = allgatherv(world, sol.policy)[0]
    split = evaluate_in_env(world, "FrozenLake-v1", {}, policy, 20, 0.99, seed=3,
                            success_reward=1.0)
    whole = evaluate_in_env(alone, "FrozenLake-v1", {}, policy, 20, 0.99, seed=3,
                            success_reward=1.0)
    assert split.to_dict() == pytest.approx(whole.to_dict(), abs=1e-12)
    grid = GridWorld(7, seed=2)
    sol = solve(world, grid, "value", 0.95, 1e-8)
    policy = allgatherv(world, sol.policy)[0]
    split = evaluate_in_model(world, grid, policy, 8, 0.95, seed=4)
    whole = evaluate_in_model(alone, grid, policy, 8, 0.95, seed=4)
    assert split.to_dict() == pytest.approx(whole.to_dict(), abs=1e-12)
