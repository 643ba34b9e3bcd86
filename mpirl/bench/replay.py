"""Bench section "replay": insert and sample throughput of the replay memory, one process.

For capacities 1e4, 1e5 and 1e6 (CartPole-shaped records of 56 bytes), uniform and prioritized:

- insert: transitions/s appending chunks of 256 to a full ring (the steady state);
- sample: transitions/s of one learning step's replay work, a batch of 256 drawn (with importance
  weights and the records gathered) plus, when prioritized, its priorities updated.

The headline target: a prioritized batch of 256 from a memory of 1e6, drawn and its priorities
updated, in under 100 microseconds (the records' gather is reported separately: it is a copy of
256 rows, not replay bookkeeping). Times are the median of several blocks of repeats, because
the machine may be shared.
"""
from __future__ import annotations

import os
import time

import numpy as np

from mpirl.replay.buffer import ReplayBuffer, transition_dtype

CAPACITIES = (10_000, 100_000, 1_000_000)
BATCH, CHUNK = 256, 256
TARGET_US = 100.0
DTYPE = transition_dtype((4,))   # CartPole-v1 observations


def _median_seconds(step, calls: int, blocks: int = 7) -> tuple[float, float]:
    """Median over ``blocks`` of the mean (wall, CPU) seconds of one ``step()`` over ``calls``.

    CPU time (this process's) is reported next to wall time because on a shared machine the
    process is descheduled for part of every wall-clock interval.
    """
    wall, cpu = [], []
    for _ in range(blocks):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            step()
        wall.append((time.perf_counter() - t0) / calls)
        cpu.append((time.process_time() - c0) / calls)
    return float(np.median(wall)), float(np.median(cpu))


def _full_memory(capacity: int, prioritized: bool, rng) -> ReplayBuffer:
    memory = ReplayBuffer(capacity, DTYPE, prioritized=prioritized, alpha=0.6)
    chunk = np.zeros(min(capacity, 65_536), dtype=DTYPE)
    chunk["obs"] = rng.normal(size=chunk["obs"].shape)
    while memory.added < capacity:
        memory.add(chunk[:capacity - memory.added])
    if prioritized:  # spread priorities out, as after some learning
        memory.update_priorities(np.arange(capacity), rng.exponential(size=capacity))
    return memory


def measure(capacity: int, prioritized: bool, calls: int) -> dict:
    rng = np.random.default_rng(0)
    memory = _full_memory(capacity, prioritized, rng)
    chunk = memory.storage[:CHUNK].copy()
    insert_s, _ = _median_seconds(lambda: memory.add(chunk), calls)
    td_errors = rng.exponential(size=BATCH)   # stand-in new priorities (a loss gives them free)

    def draw_and_update():
        slots, _ = memory.sample_indices(BATCH, rng)
        if prioritized:
            memory.update_priorities(slots, td_errors)

    def learning_step():
        _, slots, _ = memory.sample(BATCH, rng, beta=0.4)
        memory.update_priorities(slots, td_errors)

    bookkeeping_s, bookkeeping_cpu_s = _median_seconds(draw_and_update, calls)
    step_s, _ = _median_seconds(learning_step, calls)
    return {"capacity": capacity, "prioritized": prioritized,
            "insert_per_s": CHUNK / insert_s, "sample_per_s": BATCH / step_s,
            "draw_update_us": bookkeeping_s * 1e6, "draw_update_cpu_us": bookkeeping_cpu_s * 1e6,
            "step_us": step_s * 1e6}


def run(args) -> dict:
    capacities = (10_000, 1_000_000) if args.quick else CAPACITIES
    calls = 50 if args.quick else 400
    load_before = os.getloadavg()[0]  # other jobs on the machine distort every timing
    rows = [measure(c, p, calls) for c in capacities for p in (False, True)]
    headline = next(r for r in rows if r["capacity"] == 1_000_000 and r["prioritized"])
    return {"batch": BATCH, "chunk": CHUNK, "rows": rows,
            "prioritized_1e6_draw_update_us": headline["draw_update_us"],
            "prioritized_1e6_draw_update_cpu_us": headline["draw_update_cpu_us"],
            "target_us": TARGET_US, "target_met": headline["draw_update_us"] < TARGET_US,
            "load_average": [load_before, os.getloadavg()[0]]}


def table(result: dict) -> str:
    m = result.get("machine", {})
    load = result.get("load_average", [float("nan")] * 2)
    lines = [f"Replay memory, one process ({m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
             f"load average {load[0]:.1f}-{load[1]:.1f}; batch {result['batch']}, insert chunks "
             f"of {result['chunk']}, median of repeats)",
             "",
             "| capacity | replay | insert (transitions/s) | sample + update (transitions/s) "
             "| draw + priority update (us) | same, CPU time (us) | with record gather (us) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        kind = "prioritized" if r["prioritized"] else "uniform"
        lines.append(f"| {r['capacity']:,} | {kind} | {r['insert_per_s']:,.0f} | "
                     f"{r['sample_per_s']:,.0f} | {r['draw_update_us']:.1f} | "
                     f"{r['draw_update_cpu_us']:.1f} | {r['step_us']:.1f} |")
    verdict = "met" if result["target_met"] else "NOT met"
    lines += ["", f"Target: prioritized batch of {result['batch']} from 1e6 drawn + priorities "
                  f"updated in < {result['target_us']:.0f} us (wall clock): "
                  f"{result['prioritized_1e6_draw_update_us']:.1f} us ({verdict}); CPU time "
                  f"{result['prioritized_1e6_draw_update_cpu_us']:.1f} us."]
    return "\n".join(lines)
