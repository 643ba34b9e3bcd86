"""Replay shared across ranks: identical memories (allgather), one global memory (sharded),
priorities routed home, and the rate limiter holding its ratio over all ranks."""
import numpy as np
import pytest

from mpirl.comm import World
from mpirl.comm.collectives import allreduce_sum
from mpirl.replay import RateLimiter, ReplayBuffer, make_shared_replay, transition_dtype
from mpirl.replay.buffer import PRIORITY_EPS
from tests.chisquare import assert_frequencies

NPROCS = (2, 3)
TIMEOUT = 120

DTYPE = transition_dtype((2,))
SEED = 11


def _records(ids, rank):
    """Records carrying their global id in obs[0] and their author in obs[1]."""
    out = np.zeros(len(ids), dtype=DTYPE)
    out["obs"][:, 0] = ids
    out["obs"][:, 1] = rank
    out["action"] = ids
    return out


def _ids_added(world, step):
    """Rank r adds a different number of records at each step (r + step) % 3 + 1, ids unique."""
    counts = [(r + step) % 3 + 1 for r in range(world.size)]
    start = 1000 * step + sum(counts[:world.rank])
    return np.arange(start, start + counts[world.rank]), counts


@pytest.mark.mpi(min_size=2)
def test_allgather_memories_are_identical_rank_ordered_concatenations():
    world = World()
    memory = ReplayBuffer(64, DTYPE, prioritized=True, alpha=0.6)
    shared = make_shared_replay("allgather", world, memory, SEED)
    expected = []
    for step in range(20):                        # 20 steps * ~2 per rank: wraps the ring
        ids, _ = _ids_added(world, step)
        shared.add(_records(ids, world.rank))
        expected += [rec for part in world.allgather_obj(_records(ids, world.rank))
                     for rec in part.tolist()]
        batch = shared.sample(8, beta=0.5)
        shared.update_priorities(batch, batch.records["obs"][:, 0] % 7 + world.rank)

    # the ring holds the newest 64 records of the rank-ordered stream, on every rank
    reference = np.array(expected, dtype=DTYPE)[-64:]
    order = (memory.next + np.arange(64)) % 64
    np.testing.assert_array_equal(memory.storage[order], reference)
    every = world.allgather_obj((memory.storage.tobytes(), memory.tree.tree.tobytes()))
    assert all(e == every[0] for e in every), "memories or priorities differ between ranks"


@pytest.mark.mpi(min_size=2)
def test_allgather_ranks_learn_from_slices_of_one_global_batch():
    world = World()
    memory = ReplayBuffer(100, DTYPE, prioritized=True, alpha=0.6)
    shared = make_shared_replay("allgather", world, memory, SEED)
    ids, counts = _ids_added(world, 0)
    shared.add(_records(ids, world.rank))
    batch = shared.sample(5, beta=0.4)
    got = world.allgather_obj((batch.records, batch.weights))

    # a single process with the whole memory and the shared generator draws the same batch
    solo = ReplayBuffer(100, DTYPE, prioritized=True, alpha=0.6)
    solo.add(np.concatenate([_records(_ids_added_for(r, counts), r) for r in range(world.size)]))
    records, _, weights = solo.sample(5 * world.size, np.random.default_rng([SEED, 0x5eed]), 0.4)
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), records)
    np.testing.assert_allclose(np.concatenate([g[1] for g in got]), weights, rtol=1e-6)


def _ids_added_for(rank, counts):
    start = sum(counts[:rank])
    return np.arange(start, start + counts[rank])


def _sharded_setup(world, per_rank=10, alpha=0.8):
    """Shard r holds ids [r * per_rank, (r + 1) * per_rank) with priority (id % 9) + 1 + r."""
    memory = ReplayBuffer(32, DTYPE, prioritized=True, alpha=alpha)
    shared = make_shared_replay("sharded", world, memory, SEED)
    ids = np.arange(world.rank * per_rank, (world.rank + 1) * per_rank)
    slots = memory.add(_records(ids, world.rank))
    memory.update_priorities(slots, ids % 9 + 1.0 + world.rank)
    everyone = np.arange(world.size * per_rank)
    p = (everyone % 9 + 1.0 + everyone // per_rank + PRIORITY_EPS) ** alpha
    return memory, shared, p / p.sum()


@pytest.mark.mpi(min_size=2)
def test_sharded_pooled_frequencies_and_weights_match_one_global_memory():
    world = World()
    beta = 0.6
    memory, shared, global_probs = _sharded_setup(world)
    counts = np.zeros(global_probs.size)
    for _ in range(300):
        batch = shared.sample(16, beta=beta)
        assert batch.records.shape == (16,)
        ids = batch.records["obs"][:, 0].astype(int)
        counts += np.bincount(ids, minlength=global_probs.size)
        # weights: closed form with the global N and P(i), normalised over the global batch
        pooled = world.allgather_obj((ids, batch.weights))
        all_ids = np.concatenate([p[0] for p in pooled])
        w = (global_probs.size * global_probs[all_ids]) ** -beta
        np.testing.assert_allclose(np.concatenate([p[1] for p in pooled]), w / w.max(), rtol=1e-5)
    pooled_counts = allreduce_sum(world, counts)
    assert pooled_counts.sum() == 300 * 16 * world.size
    assert_frequencies(pooled_counts, global_probs)


@pytest.mark.mpi(min_size=2)
def test_sharded_new_priorities_reach_the_owning_shard():
    world = World()
    memory, shared, _ = _sharded_setup(world, alpha=1.0)
    for round_ in range(5):
        batch = shared.sample(12, beta=0.4)
        ids = batch.records["obs"][:, 0]
        # the learner's new priority names the transition, so the owner can check it got its own
        shared.update_priorities(batch, 100.0 * round_ + ids)
        mine = np.arange(memory.size)
        owned_ids = memory.storage["obs"][mine, 0]
        leaves = memory.tree.leaves[mine]
        pooled = np.concatenate(world.allgather_obj(ids))
        for slot in mine:
            if owned_ids[slot] in pooled:    # drawn this round by some learner
                expected = 100.0 * round_ + owned_ids[slot] + PRIORITY_EPS
                assert leaves[slot] == pytest.approx(expected)
        assert all(memory.storage["obs"][:, 1][mine] == world.rank)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode", ["allgather", "sharded", "none"])
def test_rate_limiter_holds_the_global_ratio_in_every_mode(mode):
    world = World()
    envs, batch_size, spi = 4, 8, 2.0
    memory = ReplayBuffer(10_000, DTYPE, prioritized=True, alpha=0.6)
    shared = make_shared_replay(mode, world, memory, SEED)
    global_batch, global_insert = batch_size * world.size, envs * world.size
    limiter = RateLimiter(spi, min_size=64, tolerance=0.25, sample_chunk=global_batch,
                          insert_chunk=global_insert)
    sampled = inserted = 0
    for step in range(150):
        while not limiter.can_insert(global_insert):      # learning has fallen behind: catch up
            shared.sample(batch_size, beta=0.4)
            limiter.sample(global_batch)
        shared.add(_records(np.full(envs, step), world.rank))
        limiter.insert(global_insert)
        inserted += envs
        if step % 3 == 0:                                 # learn in bursts, as far as allowed
            while limiter.can_sample(global_batch):
                batch = shared.sample(batch_size, beta=0.4)
                shared.update_priorities(batch, np.ones(batch_size))
                limiter.sample(global_batch)
                sampled += batch.records.shape[0]
        total_in, total_out = allreduce_sum(world, [inserted, sampled + 0.0])
        # what the ranks really inserted and learned from, against the band
        target = spi * max(total_in - limiter.min_size, 0)
        assert abs(limiter.sampled - target) <= limiter.error_buffer
        assert total_in == limiter.inserted
    assert limiter.ratio == pytest.approx(spi, rel=0.25)


@pytest.mark.parametrize("mode", ["allgather", "sharded"])
@pytest.mark.mpi(min_size=2)
def test_frame_memories_return_every_ranks_stacks_as_a_naive_store_would(mode):
    """Pixels: each rank's envs feed the frame-once memory (allgather: every rank's lanes in
    every memory, which stay identical; sharded: a rank's own lanes). Every record of every
    rank's slice of a global batch equals the naive whole-stack record of the same step, which
    may come from any rank."""
    from mpirl.replay import FrameAdder, FrameReplay, NStepAdder
    from tests.unit.test_frame_replay import H, K, W, StackedFrames
    world = World()
    E, n, gamma = 2, 2, 0.9
    lanes = E * world.size if mode == "allgather" else E
    memory = FrameReplay(lanes * 30, lanes, (K, H, W), n, gamma, prioritized=True)
    adder = FrameAdder(E, (K, H, W), lane_offset=world.rank * E if mode == "allgather" else 0)
    naive = NStepAdder(E, n, gamma, transition_dtype((K, H, W), np.uint8))
    shared = make_shared_replay(mode, world, memory, SEED)
    env, expected, checked = StackedFrames(E, seed=100 + world.rank), {}, 0
    for t in range(80):                                   # lanes of 30 slots wrap ~3 times
        obs = env.obs.copy()
        ids = (t * world.size + world.rank) * E + np.arange(E)
        nxt, reward, terminated, truncated, valid = env.step()
        shared.add(adder.add(obs, ids, reward, nxt, terminated, truncated, valid))
        for part in world.allgather_obj(naive.add(obs, ids, reward, nxt, terminated, truncated,
                                                  valid)):
            expected.update((int(r["action"]), r) for r in part)
        if t < 5:
            continue
        batch = shared.sample(4, beta=0.5)
        for record in batch.records:
            want = expected[int(record["action"])]
            np.testing.assert_array_equal(record["obs"], want["obs"])
            np.testing.assert_array_equal(record["next_obs"], want["next_obs"])
            assert record["done"] == want["done"] and record["discount"] == want["discount"]
            np.testing.assert_allclose(record["reward"], want["reward"], rtol=1e-6)
        checked += len(batch.records)
        shared.update_priorities(batch, np.abs(batch.records["reward"]) + world.rank)
    assert checked == 75 * 4
    if mode == "allgather":
        every = world.allgather_obj((memory.frames.tobytes(), memory.live.tobytes(),
                                     memory.tree.tree.tobytes()))
        assert all(e == every[0] for e in every), "frame memories differ between ranks"
