"""Distributed value, Q-value and policy iteration over contiguous slices of states.

Every rank owns the states ``[lo, hi)`` of a :class:`~mpirl.comm.blocks.Blocks` split and holds
only their rows of P. Each sweep it backs up its slice from the whole value vector V (n_states,)
into the next V, then the exchange gives every rank the new V and one Allreduce(MAX) the largest
Bellman residual; the iteration stops when that falls below ``tol``. The exchange is an in-place
Allgatherv of private copies ("allgatherv"), or, with ``exchange="shared"`` (the default), a
barrier over V in node-shared memory plus an Allgatherv between nodes
(:mod:`mpirl.comm.shared_blocks`). Sweeps are Jacobi (every state reads the previous sweep's V,
which is why there are two V buffers), so the result is the same at any number of ranks.

Stopping at residual ||V_k+1 - V_k||_inf < tol leaves V within gamma * tol of satisfying the
Bellman optimality equation, and within gamma * tol / (1 - gamma) of V*.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mpirl.comm import World
from mpirl.comm.blocks import Blocks
from mpirl.comm.shared_blocks import SharedBlocks
from mpirl.mdp.backup import Backup, greedy, max_over_actions

METHODS = ("value", "q", "policy")
EXCHANGES = ("shared", "allgatherv")


@dataclass
class Solution:
    """What a solve returns on every rank.

    ``V`` (n_states,) is whole on every rank (its own copy); ``policy`` (hi - lo,) and ``Q``
    (hi - lo, A) are this rank's slice (``mpirl.comm.exchange.allgatherv`` puts them together);
    ``Q`` is None unless computed. ``residual``: the last sweep's max |change| of V ("value") or
    of Q ("q"); for "policy" the Bellman optimality residual max |max_a Q - V| of the final V.
    """

    method: str
    V: np.ndarray
    policy: np.ndarray
    Q: np.ndarray | None
    sweeps: int
    residual: float
    converged: bool
    seconds: float            # wall time of the sweeps
    comm_seconds: float       # of which in the exchange: V going round + the residual's max
    cpu_seconds: float        # this process's CPU time over the same span
    policy_iterations: int = 0
    transitions: int = 0      # in this rank's slice
    bytes_per_sweep: int = 0  # of this rank's transition arrays read by one full backup
    exchange: str = "allgatherv"  # how V went round: "shared" (node memory) or "allgatherv"


class _Clock:
    """Wall and CPU time since it was made."""

    def __init__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall0, time.process_time() - self.cpu0


class _Exchange:
    """The per-sweep communication, timed: new V slices to everyone, the residual maximum."""

    def __init__(self, blocks: Blocks):
        self.blocks = blocks
        self.seconds = 0.0

    def __call__(self, V_next: np.ndarray, local_residual: float) -> float:
        t0 = time.perf_counter()
        self.blocks.allgather_inplace(V_next)
        residual = self.blocks.max_over_ranks(local_residual)
        self.seconds += time.perf_counter() - t0
        return residual

    @property
    def kind(self) -> str:
        """How V went round: "shared" (node memory) or "allgatherv" (private copies)."""
        return "shared" if self.blocks.shared else "allgatherv"


def value_iteration(blocks: Blocks, backup: Backup, gamma: float, tol: float,
                    max_sweeps: int) -> Solution:
    """V <- max_a [rbar + gamma P V] until the largest change of V is below ``tol``."""
    lo, hi, A = blocks.lo, blocks.hi, backup.n_actions
    V, V_next = blocks.vectors(2)
    exchange, clock = _Exchange(blocks), _Clock()
    residual, sweeps = np.inf, 0
    while sweeps < max_sweeps and not residual < tol:
        residual = exchange(V_next, backup.state_values(V, gamma, out=V_next[lo:hi]))
        V, V_next = V_next, V
        sweeps += 1
    seconds, cpu_seconds = clock.read()
    policy = greedy(backup.q_values(V, gamma), A)  # the greedy policy of the final V
    return Solution("value", V.copy(), policy, None, sweeps, residual, residual < tol, seconds,
                    exchange.seconds, cpu_seconds, exchange=exchange.kind)


def q_value_iteration(blocks: Blocks, backup: Backup, gamma: float, tol: float,
                      max_sweeps: int) -> Solution:
    """Q <- rbar + gamma P max_a' Q until the largest change of Q is below ``tol``.

    Ranks exchange only V = max_a' Q (n_states,), all that another slice's backup reads:
    A times less than the whole Q.
    """
    lo, hi, A = blocks.lo, blocks.hi, backup.n_actions
    V, V_next = blocks.vectors(2)
    q, q_next = np.zeros(backup.n_rows), np.empty(backup.n_rows)
    exchange, clock = _Exchange(blocks), _Clock()
    residual, sweeps = np.inf, 0
    while sweeps < max_sweeps and not residual < tol:
        backup.q_values(V, gamma, out=q_next)
        max_over_actions(q_next, A, out=V_next[lo:hi])
        residual = exchange(V_next, float(np.max(np.abs(q_next - q))))
        q, q_next = q_next, q
        V, V_next = V_next, V
        sweeps += 1
    seconds, cpu_seconds = clock.read()
    return Solution("q", V.copy(), greedy(q, A), q.reshape(-1, A).copy(), sweeps, residual,
                    residual < tol, seconds, exchange.seconds, cpu_seconds,
                    exchange=exchange.kind)


def policy_iteration(blocks: Blocks, backup: Backup, gamma: float, tol: float,
                     max_sweeps: int) -> Solution:
    """Evaluate the policy (sweeps of V <- r_pi + gamma P_pi V over the policy's rows only, until
    the change is below ``tol``), make it greedy, repeat until no rank's policy changes. A
    state keeps its action unless another's Q is better by more than ``tol``: less is within
    the evaluation's noise (see :func:`~mpirl.mdp.backup.greedy`).

    Evaluation starts from the previous V, so later rounds take few sweeps. ``residual`` is the
    Bellman optimality residual max |max_a Q - V| of the final V.
    """
    lo, hi, A = blocks.lo, blocks.hi, backup.n_actions
    policy = np.zeros(hi - lo, dtype=np.int64)
    V, V_next = blocks.vectors(2)
    q = np.empty(backup.n_rows)
    exchange, clock = _Exchange(blocks), _Clock()  # the improvement steps count too
    sweeps = rounds = 0
    stable = False
    while sweeps < max_sweeps and not stable:
        on_policy = backup.restrict(policy)
        residual = np.inf
        while sweeps < max_sweeps and not residual < tol:
            mine = on_policy.q_values(V, gamma, out=V_next[lo:hi])
            residual = exchange(V_next, float(np.max(np.abs(mine - V[lo:hi]))))
            V, V_next = V_next, V
            sweeps += 1
        backup.q_values(V, gamma, out=q)
        improved = greedy(q, A, keep=policy, slack=tol)
        stable = not blocks.world.any_rank(bool((improved != policy).any()))
        policy = improved
        rounds += 1
    optimality = np.abs(max_over_actions(q, A, out=np.empty(hi - lo)) - V[lo:hi])
    residual = blocks.max_over_ranks(float(optimality.max()))
    seconds, cpu_seconds = clock.read()
    return Solution("policy", V.copy(), policy, None, sweeps, residual, stable and residual < tol,
                    seconds, exchange.seconds, cpu_seconds, rounds, exchange=exchange.kind)


def split_states(world: World, n_states: int, exchange: str = "shared") -> Blocks:
    """The split of ``n_states`` over ``world`` whose vectors go round by ``exchange``."""
    if exchange not in EXCHANGES:
        raise ValueError(f"exchange must be one of {EXCHANGES}, not {exchange!r}")
    return SharedBlocks(world, n_states) if exchange == "shared" else Blocks(world, n_states)


def solve(world: World, source, method: str = "value", gamma: float = 0.99, tol: float = 1e-8,
          max_sweeps: int = 100_000, exchange: str = "shared") -> Solution:
    """Split ``source``'s states over ``world``, build this rank's rows and solve.

    ``source`` is anything with ``n_states`` and ``rows(lo, hi)`` (see mpirl.mdp.mdp).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if not 0 <= gamma < 1:
        raise ValueError(f"gamma must be in [0, 1), not {gamma}")   # else V may not converge
    if not tol > 0:
        raise ValueError(f"tol must be > 0, not {tol}")
    if max_sweeps < 1:
        raise ValueError(f"max_sweeps must be >= 1, not {max_sweeps}")
    blocks = split_states(world, source.n_states, exchange)
    backup = Backup(source.rows(blocks.lo, blocks.hi))
    run = {"value": value_iteration, "q": q_value_iteration, "policy": policy_iteration}[method]
    solution = run(blocks, backup, gamma, tol, max_sweeps)
    # Not in a `finally`: free is collective, and a rank that failed alone would wait in it for
    # the others forever instead of reaching the excepthook that aborts the job.
    blocks.free()
    solution.transitions, solution.bytes_per_sweep = len(backup.next_state), backup.bytes_per_sweep
    return solution
