"""Bench section "mdp": seconds per value-iteration sweep of a random sparse MDP at 1 and 2 ranks,
and how close a sweep comes to the memory-bandwidth bound.

A sweep must at least read the transition arrays once (next state, continuation probability,
expected reward), so ``bytes of P / memory bandwidth`` is a floor on its time. The bandwidth is
that of a numpy copy of a large array (bytes read + bytes written per second, STREAM's
convention), measured by every rank at once, so at 2 ranks it is the two cores' aggregate.

Each row (a rank count and how V goes round: ``--exchange shared``, the default, or
``allgatherv``) runs as its own ``mpirun -n N python -m mpirl.bench.mdp --worker`` job, which
times ``rounds`` runs of ``sweeps`` sweeps and reports the fastest round (the machine may be
shared: the load average is recorded next to the figures). The targets are judged on the
default exchange; the allgatherv row shows what sharing V within the node is worth.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from mpirl.native import kernels, switch

FULL = dict(states=1_000_000, actions=4, branching=4, sweeps=10, rounds=6, copy_mb=256)
QUICK = dict(states=20_000, actions=4, branching=4, sweeps=5, rounds=1, copy_mb=64)
ROWS = ((1, "shared"), (2, "allgatherv"), (2, "shared"))  # (ranks, exchange)
TARGET_SPEEDUP, TARGET_BOUND_RATIO = 1.7, 3.0
# V's sizes at which the 1-rank job times its random reads alone (states of 8 bytes): from
# within L1 to past a 2 MB L2; the last is the whole V of the full benchmark.
READS_BY_V_BYTES = tuple(n // 8 for n in (4 << 10, 256 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20))


def copy_bandwidth(world, nbytes: int, repeats: int = 5) -> float:
    """This rank's copy bandwidth in bytes/s, all ranks copying at the same time."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages first
    best = np.inf
    for _ in range(repeats):
        world.barrier()
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def seconds_together(world, work, repeats: int = 5) -> float:
    """The slowest rank's best time for ``work()``, every rank starting it at the same moment."""
    best = np.inf
    for _ in range(repeats):
        world.barrier()
        t0 = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - t0)
    return max(world.allgather_obj(best))


def probe_seconds(world, backup, V: np.ndarray, states: int) -> float:
    """Seconds for every rank at once to back up the same number of states (the first
    ``states`` of its slice): the same work per rank at any rank count, so n * t(1) / t(n) is the
    speed-up the machine itself allows n ranks (below n where cores share execution units or
    other jobs are running)."""
    part, out = backup.first(states), np.empty(states)
    return seconds_together(world, lambda: part.state_values(V, 0.99, out))


def cached_v_seconds(world, backup, states: int) -> float:
    """Seconds for a sweep of this rank's slice whose random reads of V all hit the L1 cache:
    every successor folded into the first 512 states. The rows' arrays are streamed as in a real
    sweep, so this is the time of reading P and computing, without the wait for V's lines; the
    gap to the real sweep is what the random reads cost. Folds ``backup``'s successors in place:
    run it last."""
    np.remainder(backup.next_state, min(states, 512), out=backup.next_state)
    V, out = np.random.default_rng(0).random(states), np.empty(backup.hi - backup.lo)
    backup.state_values(V, 0.99, out)   # page in
    return seconds_together(world, lambda: backup.state_values(V, 0.99, out))


def floor_seconds(world, backup, V: np.ndarray) -> tuple[float, float] | None:
    """(Seconds to read this rank's transition arrays once in order; seconds to read ``V`` at
    each of its transitions' next states), every rank at once: the two parts of a sweep, each
    alone. A sweep cannot beat the larger, so where V's random reads alone take more than 3x
    the bound, no sweep that reads V at random can meet that target. None without the C
    kernels. Timed between the rounds of sweeps, so that both see the machine in the same
    mood (its other tenants come and go)."""
    lib = kernels()
    if lib is None:
        return None
    arrays = (backup.next_state, backup.cont_prob, backup.expected_reward)

    def read_p():
        for a in arrays:
            lib.read_in_order(a.ctypes.data, a.nbytes // 8)

    return (seconds_together(world, read_p, 2),
            seconds_together(world, lambda: _read_at(lib, V, backup.next_state), 2))


def _read_at(lib, V: np.ndarray, next_state: np.ndarray) -> None:
    """V read at every entry of ``next_state`` (int32), and nothing else (the C kernel)."""
    lib.read_at(V.ctypes.data, next_state.ctypes.data, len(next_state))


def reads_by_v_size(world, backup, sizes: tuple[int, ...]) -> list[dict]:
    """For each n in ``sizes`` (clipped to the MDP): seconds to read a V of n states at this
    slice's successors folded into [0, n), and nothing else: how a random read's cost grows as V
    outgrows each cache, the whole V (the last row) being the sweep's case."""
    lib = kernels()
    if lib is None:
        return []
    folded = np.empty_like(backup.next_state)
    V = np.random.default_rng(0).random(backup.n_states)
    rows = []
    for n in sorted({min(size, backup.n_states) for size in sizes}):
        np.remainder(backup.next_state, n, out=folded)
        seconds = seconds_together(world, lambda: _read_at(lib, V, folded), 3)
        rows.append({"states": n, "v_bytes": 8 * n, "seconds": seconds,
                     "ns_per_read": seconds / len(folded) * 1e9})
    return rows


def stream_hint() -> str:
    """How the sweeps prefetched P (see kernels.c): "non-temporal", "T0", or "-" (no AVX2 loop
    ran, or no C kernels)."""
    lib = kernels()
    hint = None if lib is None else switch(lib, "mpirl_stream_hint")
    return {0: "T0", 1: "non-temporal"}.get(None if hint is None else hint.value, "-")


def worker(argv: list[str]) -> None:
    """One timing job: print one JSON line (rank 0) with this rank count's figures."""
    from mpirl.comm import World
    from mpirl.mdp.backup import Backup
    from mpirl.mdp.mdp import RandomMDP
    from mpirl.mdp.solve import EXCHANGES, split_states, value_iteration

    p = argparse.ArgumentParser()
    for name in ("states", "actions", "branching", "sweeps", "rounds", "copy_mb"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, required=True)
    p.add_argument("--exchange", choices=EXCHANGES, required=True)
    a = p.parse_args(argv)
    world = World()
    bandwidth = sum(world.allgather_obj(copy_bandwidth(world, a.copy_mb << 20)))
    blocks = split_states(world, a.states, a.exchange)
    t0 = time.perf_counter()
    backup = Backup(RandomMDP(a.states, a.actions, a.branching, seed=0).rows(blocks.lo, blocks.hi))
    build_s = blocks.max_over_ranks(time.perf_counter() - t0)
    value_iteration(blocks, backup, 0.99, 0.0, 2)  # warm-up: page in, fill caches
    best = None   # (slowest rank's wall, comm and CPU seconds; the solution) of the fastest round
    floors = []   # per round, floor_seconds of the V the sweeps read
    for _ in range(a.rounds):
        world.barrier()
        sol = value_iteration(blocks, backup, 0.99, 0.0, a.sweeps)  # tol 0: exactly a.sweeps
        times = [blocks.max_over_ranks(x) for x in (sol.seconds, sol.comm_seconds,
                                                    sol.cpu_seconds)]
        if best is None or times[0] < best[0][0]:
            best = times, sol
        floors.append(floor_seconds(world, backup, blocks.vectors(2)[0]))  # the sweeps' memory
    (seconds, comm, cpu), sol = best
    floors = None if floors[0] is None else np.min(floors, axis=0)
    (V,) = blocks.vectors(1)  # the probe reads V where the sweeps do (shared or private)
    V[blocks.lo:blocks.hi] = sol.V[blocks.lo:blocks.hi]
    blocks.allgather_inplace(V)
    probe = probe_seconds(world, backup, V, min(a.states // 4, int(blocks.counts.min())))
    blocks.free()
    by_size = reads_by_v_size(world, backup, READS_BY_V_BYTES) if world.size == 1 else []
    cached = cached_v_seconds(world, backup, a.states)
    p_bytes = sum(world.allgather_obj(backup.bytes_per_sweep))
    if world.is_root:
        per_sweep = seconds / sol.sweeps
        print(json.dumps({
            "ranks": world.size, "exchange_used": sol.exchange, "states": a.states,
            "sweeps": sol.sweeps, "rounds": a.rounds,
            "seconds_per_sweep": per_sweep, "comm_seconds_per_sweep": comm / sol.sweeps,
            "cpu_seconds_per_sweep": cpu / sol.sweeps, "load_average": os.getloadavg()[0],
            "p_bytes_per_sweep": p_bytes, "p_read_gb_per_s": p_bytes / per_sweep / 1e9,
            "copy_bandwidth_gb_per_s": bandwidth / 1e9,
            "bound_seconds_per_sweep": p_bytes / bandwidth,
            "probe_seconds": probe, "cached_v_seconds_per_sweep": cached,
            "p_alone_seconds_per_sweep": None if floors is None else float(floors[0]),
            "v_reads_alone_seconds_per_sweep": None if floors is None else float(floors[1]),
            "stream_hint": stream_hint(), "v_reads_by_size": by_size,
            "build_seconds": build_s}), flush=True)


def run(args) -> dict:
    from mpirl.launch import mpirun  # the launcher with a timeout that kills the whole job

    size = QUICK if args.quick else FULL
    flags = [f"--{k.replace('_', '-')}={size[k]}"
             for k in ("states", "actions", "branching", "sweeps", "rounds", "copy_mb")]
    rows = []
    for n, exchange in ROWS:
        res = mpirun(n, ["-m", "mpirl.bench.mdp", "--worker", *flags, f"--exchange={exchange}"],
                     timeout=600).check()
        figures = json.loads([ln for ln in res.output.splitlines() if ln.startswith("{")][-1])
        figures["exchange"] = exchange  # as asked; "exchange_used" is what the ranks did
        bound = figures["bound_seconds_per_sweep"]
        figures["bound_ratio"] = figures["seconds_per_sweep"] / bound
        figures["cached_v_bound_ratio"] = figures["cached_v_seconds_per_sweep"] / bound
        for part in ("p_alone", "v_reads_alone"):
            alone = figures[f"{part}_seconds_per_sweep"]
            figures[f"{part}_bound_ratio"] = alone and alone / bound
        rows.append(figures)
    one = rows[0]
    for r in rows:
        r["speedup"] = one["seconds_per_sweep"] / r["seconds_per_sweep"]
        r["machine_ceiling"] = r["ranks"] * one["probe_seconds"] / r["probe_seconds"]
    judged = [r for r in rows if r["exchange"] == "shared"]  # the default
    speedup = judged[-1]["speedup"]
    return {"mdp": {k: size[k] for k in ("states", "actions", "branching")},
            "sweeps_timed": size["sweeps"], "rounds": size["rounds"], "rows": rows,
            "speedup": speedup,
            "targets": {"speedup_at_2_ranks": TARGET_SPEEDUP, "max_bound_ratio": TARGET_BOUND_RATIO},
            "met": {"speedup": speedup >= TARGET_SPEEDUP,
                    "bound": all(r["bound_ratio"] <= TARGET_BOUND_RATIO for r in judged)}}


def table(result: dict) -> str:
    m = result["mdp"]
    lines = [f"Random sparse MDP: {m['states']:,} states, {m['actions']} actions, "
             f"{m['branching']} successors per action; value iteration, fastest of "
             f"{result['rounds']} round(s) of {result['sweeps_timed']} sweeps. "
             f"Machine: {result.get('machine', {}).get('cpu', '?')}, "
             f"{result.get('machine', {}).get('cores', '?')} cores.",
             "",
             "| ranks | V exchange | s / sweep | of which comm | CPU s / sweep per rank "
             "| P read / sweep | P read rate | copy bandwidth | bound s / sweep | sweep / bound "
             "| V in L1: sweep / bound | P alone / bound | V reads alone / bound | P prefetch "
             "| speed-up | machine ceiling | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        exchange = r["exchange"] if r["ranks"] > 1 else "-"
        lines.append(
            f"| {r['ranks']} | {exchange} | {r['seconds_per_sweep']:.4f} "
            f"| {r['comm_seconds_per_sweep']:.4f} "
            f"| {r['cpu_seconds_per_sweep']:.4f} | {r['p_bytes_per_sweep'] / 1e6:.0f} MB "
            f"| {r['p_read_gb_per_s']:.2f} GB/s | {r['copy_bandwidth_gb_per_s']:.1f} GB/s "
            f"| {r['bound_seconds_per_sweep']:.4f} | {r['bound_ratio']:.1f}x "
            f"| {r['cached_v_bound_ratio']:.1f}x | {_ratio(r['p_alone_bound_ratio'])} "
            f"| {_ratio(r['v_reads_alone_bound_ratio'])} | {r['stream_hint']} "
            f"| {r['speedup']:.2f}x "
            f"| {r['machine_ceiling']:.2f}x | {r['load_average']:.1f} |")
    t, met = result["targets"], result["met"]
    verdict = {True: "met", False: "NOT met"}
    lines += ["", f"Targets, on the default exchange (shared): speed-up >= "
                  f"{t['speedup_at_2_ranks']}x at 2 ranks ({verdict[met['speedup']]}); sweep "
                  f"within {t['max_bound_ratio']:.0f}x of the bandwidth bound "
                  f"({verdict[met['bound']]}{_out_of_reach(result)}). V in L1: the same sweep "
                  "with every successor "
                  "folded into the first 512 states, so that V's random reads hit the L1 cache "
                  "(P is read as before): the gap to the sweep is what those reads cost. P alone, "
                  "V reads alone: a sweep's two parts timed apart (its transition arrays read "
                  "once in order; V read at its successors, nothing else): it cannot beat the "
                  "larger. P prefetch: the hint the sweep's loop used (non-temporal on AMD, T0 "
                  "elsewhere). Machine "
                  "ceiling: n x the time one rank takes to back up a fixed block of states alone "
                  "/ the time when n ranks do it at once (the speed-up the cores allow this "
                  "kernel)."]
    by_size = result["rows"][0].get("v_reads_by_size")
    if by_size:
        bound = result["rows"][0]["bound_seconds_per_sweep"]
        lines += ["", "V's random reads alone at 1 rank, the successors folded into a V of n "
                      "states (the last row: the whole V, as in the sweep):", "",
                  "| V read at random | s / pass | ns / read | x bound |", "|---|---|---|---|"]
        lines += [f"| {r['states']:,} states ({_size(r['v_bytes'])}) | {r['seconds']:.4f} "
                  f"| {r['ns_per_read']:.2f} | {r['seconds'] / bound:.1f}x |" for r in by_size]
    return "\n".join(lines)


def _out_of_reach(result: dict) -> str:
    """Why the bound target cannot be met on this machine, when V's random reads alone already
    take longer than the target allows a whole sweep (on the rows the target is judged on)."""
    limit = result["targets"]["max_bound_ratio"]
    floors = [r["v_reads_alone_bound_ratio"] for r in result["rows"] if r["exchange"] == "shared"]
    if None in floors or min(floors) <= limit:
        return ""
    return (f": out of reach here, V's random reads alone take {min(floors):.1f}x-"
            f"{max(floors):.1f}x the bound")


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.3g} MiB" if nbytes >= 1 << 20 else f"{nbytes / 2**10:.3g} KiB"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        sys.exit("usage: python -m mpirl.bench mdp   (this module's own entry is the timing worker)")
