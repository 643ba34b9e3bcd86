"""A naive single-process reference for the MDP tests: dense tensors and plain loops.

It reads gymnasium's ``P`` dict directly (not the package's CSR arrays), so it checks the loader
as well as the solver.
"""
from __future__ import annotations

import numpy as np


def dense_from_P(P: dict, n_states: int, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, R): C[s, a, s'] = P(s' | s, a) where the episode goes on; R[s, a] = expected reward."""
    C = np.zeros((n_states, n_actions, n_states))
    R = np.zeros((n_states, n_actions))
    for s in range(n_states):
        for a in range(n_actions):
            for p, nxt, r, done in P[s][a]:
                R[s, a] += p * r
                if not done:
                    C[s, a, nxt] += p
    return C, R


def dense_from_rows(rows) -> tuple[np.ndarray, np.ndarray]:
    """The same from a whole MDP's Transitions (for the generated MDPs, which have no P dict)."""
    S, A = rows.n_states, rows.n_actions
    C, R = np.zeros((S * A, S)), np.zeros(S * A)
    row_of = np.repeat(np.arange(S * A), np.diff(rows.indptr))
    np.add.at(C, (row_of, rows.next_state), rows.prob * ~rows.done)
    np.add.at(R, row_of, rows.prob * rows.reward)
    return C.reshape(S, A, S), R.reshape(S, A)


def value_iteration(C, R, gamma, tol, max_sweeps=100_000, on="V"):
    """Jacobi value iteration from V = 0 (on="V") or Q-value iteration from Q = 0 (on="Q"),
    stopping when the max change of V (or Q) is below tol. Returns (V, Q, sweeps, residual)."""
    V = np.zeros(C.shape[0])
    Q = np.zeros(R.shape)
    for sweep in range(1, max_sweeps + 1):
        Q_new = R + gamma * np.einsum("sat,t->sa", C, V)
        V_new = Q_new.max(axis=1)
        residual = np.abs(V_new - V).max() if on == "V" else np.abs(Q_new - Q).max()
        V, Q = V_new, Q_new
        if residual < tol:
            return V, Q, sweep, residual
    return V, Q, max_sweeps, residual


def optimal_values(C, R, gamma) -> tuple[np.ndarray, np.ndarray]:
    """Exact V* and a greedy optimal policy by policy iteration with linear solves."""
    S, A = R.shape
    policy = np.zeros(S, dtype=int)
    while True:
        P_pi, R_pi = C[np.arange(S), policy], R[np.arange(S), policy]
        V = np.linalg.solve(np.eye(S) - gamma * P_pi, R_pi)
        Q = R + gamma * np.einsum("sat,t->sa", C, V)
        better = Q.max(axis=1) > Q[np.arange(S), policy] + 1e-12
        if not better.any():
            return V, policy
        policy = np.where(better, Q.argmax(axis=1), policy)


def bellman_residual(C, R, gamma, V) -> float:
    """max_s |max_a (R + gamma C V)(s, a) - V(s)|: zero exactly at V*."""
    return float(np.abs((R + gamma * np.einsum("sat,t->sa", C, V)).max(axis=1) - V).max())
