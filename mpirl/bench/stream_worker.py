"""Under ``mpirun -n N`` (rank 0 learns, the others act): what IMPALA's parameter stream costs,
next to the broadcast it was chosen over.

The learner "learns" (sleeps ``learn_ms``) and then sends version k of a vector of ``n_params``
floats with mpirl.comm.stream, K times; the actors "act" (sleep 1 ms per step) and take
parameters between steps. Measured: the learner's time to start the sends per version, how long
a version takes from being sent to being loaded by an actor, and the versions an actor missed
because a newer one came first. Then the same vector is broadcast K times from the learner
(``broadcast_tensors``, one Bcast): every actor stops for each one. Prints one JSON line (rank 0).
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import torch

from mpirl.comm import World
from mpirl.comm.collectives import broadcast_tensors
from mpirl.comm.stream import ActorLink, LearnerLink, Layout

BLOCK = Layout({"unused": (np.float32, (1,))})   # only the parameter stream is measured here


def main(n_params: int, versions: int, learn_ms: float) -> None:
    torch.set_num_threads(1)
    world = World()
    stream = world.dup()
    params = Layout({"version": (np.int64, (1,)), "sent_at": (np.float64, (1,)),
                     "params": (np.float32, (n_params,))})
    vector = np.random.default_rng(0).normal(size=n_params).astype(np.float32)
    if world.rank == 0:
        link = LearnerLink(stream, list(range(1, world.size)), BLOCK, params, queue_depth=1)
        publish_s = []
        for k in range(1, versions + 1):
            time.sleep(learn_ms / 1000)

            def fill(message, k=k):
                message["version"][0], message["sent_at"][0] = k, time.time()
                message["params"][:] = vector
            started = time.perf_counter()
            link.send_params(fill)
            publish_s.append(time.perf_counter() - started)
        link.stop_and_drain()
        mine = {"publish_us": 1e6 * statistics.median(publish_s)}
    else:
        link = ActorLink(stream, 0, BLOCK, params, in_flight=1)
        delays, loads, seen = [], [], []
        local = np.empty(n_params, np.float32)

        def load(message):
            started = time.perf_counter()
            local[:] = message["params"]   # what an actor does: copy into its model
            loads.append(time.perf_counter() - started)
            delays.append(time.time() - message["sent_at"][0])
            seen.append(int(message["version"][0]))

        while not link.stopped:
            time.sleep(0.001)   # a step of the actor's envs
            link.recv_params(load)
        link.finish()
        mine = {"delay_ms": 1e3 * statistics.median(delays), "load_us": 1e6 * statistics.median(loads),
                "versions_seen": len(seen)}
    world.barrier()
    tensor = torch.from_numpy(vector.copy())
    blocked = []
    for _ in range(versions):
        started = time.perf_counter()
        broadcast_tensors(world, [tensor])
        blocked.append(time.perf_counter() - started)
    mine["bcast_us"] = 1e6 * statistics.median(blocked)
    everyone = world.gather_obj(mine)
    if world.rank == 0:
        actors = everyone[1:]
        print(json.dumps({
            "n_params": n_params, "versions": versions, "learn_ms": learn_ms,
            "actors": len(actors), "learner_publish_us": everyone[0]["publish_us"],
            "delivery_ms": statistics.median(a["delay_ms"] for a in actors),
            "actor_load_us": statistics.median(a["load_us"] for a in actors),
            "versions_seen_min": min(a["versions_seen"] for a in actors),
            "bcast_actor_blocked_us": statistics.median(a["bcast_us"] for a in actors),
            "bcast_learner_us": everyone[0]["bcast_us"]}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
