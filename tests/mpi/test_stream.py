"""IMPALA's streams under pytest-mpi (mpirl.comm.stream; issue #19): rank 0 learns, the others act.

Blocks arrive intact (a CRC32 of each block's payload, checked by the learner) and in full: each
actor's blocks are consumed in the order sent, none lost and none twice, also when the learner is
slow and the bounded queues are full, and the shutdown with blocks in flight neither deadlocks nor
leaves a send unmatched (the learner's count of each actor's blocks equals the actor's own).
Parameters reach every actor whole: each message's values are a function of its version, checked
element by element, and every actor ends on the learner's last version. The policy lag stays within
the bound the queue depths imply."""
import math
import time
import zlib

import numpy as np

from mpirl.comm import World
from mpirl.comm.stream import ActorLink, LearnerLink, Layout

NPROCS = (3, 4)
TIMEOUT = 120

T, E, N_PARAMS = 5, 3, 1000
BLOCK = Layout({"payload": (np.float32, (T, E, 7)), "flags": (np.bool_, (T, E)),
                "version": (np.int64, (1,)), "seq": (np.int64, (1,)), "crc": (np.int64, (1,))})
PARAMS = Layout({"version": (np.int64, (1,)), "params": (np.float32, (N_PARAMS,))})


def crc(message) -> int:
    return zlib.crc32(message["payload"].tobytes() + message["flags"].tobytes()
                      + message["seq"].tobytes())


def params_of(version: int) -> np.ndarray:
    """What version ``version``'s parameters hold: every element tied to the version."""
    return (version * 1000.0 + np.arange(N_PARAMS)).astype(np.float32)


def run_actor(world: World, stream: World, in_flight: int, rng: np.random.Generator):
    link = ActorLink(stream, 0, BLOCK, PARAMS, in_flight)
    state = {"version": -1, "seen": []}

    def load(message):
        version = int(message["version"][0])
        # the whole message, never half of one version and half of another
        np.testing.assert_array_equal(message["params"], params_of(version))
        assert version > state["version"], "parameters went backwards"
        state["version"] = version
        state["seen"].append(version)

    link.recv_params(load, block=True)
    seq = 0
    while (block := link.free_slot(load)) is not None:
        block["payload"][:] = rng.normal(size=(T, E, 7))
        block["flags"][:] = rng.random((T, E)) < 0.5
        block["seq"][0], block["version"][0] = seq, state["version"]
        block["crc"][0] = crc(block)
        link.send_block()
        seq += 1
        link.recv_params(load)
    link.finish()
    return link.blocks_sent, state


def run_learner(stream: World, actors, updates: int, blocks_per_update: int, queue_depth: int,
                learner_sleep: float):
    link = LearnerLink(stream, actors, BLOCK, PARAMS, queue_depth)

    def fill(version):
        def write(message):
            message["version"][0] = version
            message["params"][:] = params_of(version)
        return write

    link.send_params(fill(0))
    consumed = {a: [] for a in actors}
    lags = []
    for update in range(updates):
        for _ in range(blocks_per_update):
            def consume(actor, message):
                assert int(message["crc"][0]) == crc(message), f"block from {actor} corrupted"
                consumed[actor].append(int(message["seq"][0]))
                lags.append(update - int(message["version"][0]))
            link.recv_block(consume)
        time.sleep(learner_sleep)   # a slow learner: the queues fill up
        link.send_params(fill(update + 1))
    discarded = link.stop_and_drain()
    return consumed, discarded, lags, link


def run_case(queue_depth: int, in_flight: int, updates: int, B: int, learner_sleep: float):
    world = World()
    stream = world.dup()
    actors = list(range(1, world.size))
    if world.rank == 0:
        consumed, discarded, lags, link = run_learner(stream, actors, updates, B, queue_depth,
                                                      learner_sleep)
        reports = world.gather_obj(None)[1:]
        return {"consumed": consumed, "discarded": discarded, "lags": lags, "link": link,
                "reports": dict(zip(actors, reports))}
    sent, state = run_actor(world, stream, in_flight, np.random.default_rng(world.rank))
    world.gather_obj((sent, state))
    return None


def check_complete(result, updates: int, B: int) -> None:
    consumed, reports = result["consumed"], result["reports"]
    assert sum(len(seqs) for seqs in consumed.values()) == updates * B
    for actor, seqs in consumed.items():
        sent, _ = reports[actor]
        # in order, nothing skipped, nothing twice; the rest discarded at shutdown
        assert seqs == list(range(len(seqs))), f"actor {actor}'s blocks out of order: {seqs}"
        assert result["link"].blocks_received[actor] == sent
    assert sum(len(s) for s in consumed.values()) + result["discarded"] == \
        sum(sent for sent, _ in reports.values())


def test_blocks_intact_in_order_and_complete_with_a_slow_learner():
    updates, B, Q, D = 12, 2, 2, 2
    result = run_case(Q, D, updates, B, learner_sleep=0.05)
    if result is None:
        return
    check_complete(result, updates, B)
    # the queues were full at shutdown: blocks were in flight and were drained, not left hanging
    assert result["discarded"] >= 1
    # every actor ended on the last parameters, received whole, in increasing versions
    for actor, (_, state) in result["reports"].items():
        assert state["version"] == updates, (actor, state["seen"])
    # policy lag: a block waits behind at most Q + D - 1 of its actor's blocks, and the learner
    # takes the actors whose blocks are ready in turn, so it is consumed within (Q + D) * A
    # blocks of being made; one more update for the parameters to arrive (published after every
    # update), and one more because on shared cores an actor is not always ready on its turn.
    # (An unbounded queue would let the lag grow with the run: 12 updates of 2 blocks here.)
    A = len(result["consumed"])
    bound = math.ceil((Q + D) * A / B) + 2
    lags = result["lags"]
    assert max(lags) <= bound, (max(lags), bound)
    assert max(lags) >= 1   # the slow learner made the actors' policies lag


def test_blocks_intact_under_load_with_a_fast_learner():
    """Actors and learner at full speed, deeper queues: every block's checksum holds."""
    updates, B = 60, 3
    result = run_case(queue_depth=4, in_flight=3, updates=updates, B=B, learner_sleep=0.0)
    if result is None:
        return
    check_complete(result, updates, B)
    for actor, (_, state) in result["reports"].items():
        # newer parameters reached every actor, in increasing versions (an actor busy when a
        # version is sent gets the next one instead: it may miss the last before the stop)
        assert state["seen"][0] == 0 and state["version"] >= 1, state["seen"]
        assert state["seen"] == sorted(set(state["seen"]))


def test_stop_before_any_block():
    """A learner that stops at once (a resumed run already complete) ends every actor."""
    result = run_case(queue_depth=2, in_flight=2, updates=0, B=1, learner_sleep=0.0)
    if result is None:
        return
    check_complete(result, 0, 1)
