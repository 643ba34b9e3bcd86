"""The Bellman backup of one slice of states, vectorised in numpy.

For the rows of states [lo, hi) (row = (s, a)) it computes

    Q(s, a) = rbar(s, a) + gamma * sum_j c_j V(next_j)

where rbar(s, a) = sum_j p_j r_j is the expected reward of the row and c_j = p_j (1 - done_j)
the probability of continuing to next_j. Folding rewards and episode ends into these two arrays
once leaves a sweep reading only ``next_state`` (4 B), ``c`` (8 B) per transition and ``rbar``
(8 B) per row.

A sweep is memory-bound: with the C kernels of :mod:`mpirl.native` built, each row is summed in
one pass over its transitions (``bellman_q`` / ``bellman_max``); numpy, the fallback and the
tests' reference, needs a gather, a product and a sum, each a pass of its own, chunk by chunk.
"""
from __future__ import annotations

import numpy as np

from mpirl.mdp.mdp import Transitions
from mpirl.native import kernels


class Backup:
    """Q = rbar + gamma * P V over one slice's rows.

    The sweep walks the rows in chunks of about ``chunk_nnz`` transitions so that the gathered
    values and products stay in cache (a whole-slice ``V[next]`` would write and re-read a
    temporary as large as P itself). Rows that all have the same number of transitions (the
    generated MDPs) are summed with strided adds; others with ``np.add.reduceat``.
    """

    def __init__(self, rows: Transitions, chunk_nnz: int = 1 << 16):
        expected_reward = np.add.reduceat(rows.prob * rows.reward, rows.indptr[:-1]) \
            if len(rows.prob) else np.zeros(rows.n_rows)
        self._setup(rows.n_states, rows.n_actions, rows.lo, rows.hi, rows.indptr,
                    rows.next_state, rows.prob * ~rows.done, expected_reward, chunk_nnz)

    def _setup(self, n_states, n_actions, lo, hi, indptr, next_state, cont_prob, expected_reward,
               chunk_nnz):
        self.n_states, self.n_actions, self.lo, self.hi = n_states, n_actions, lo, hi
        self.n_rows = len(indptr) - 1
        # contiguous, as the C kernels read them (views of contiguous slices stay views); state
        # ids as int32, which the kernels take, wherever they fit
        ids = np.int32 if n_states < 2**31 else np.int64
        self.indptr = np.ascontiguousarray(indptr, np.int64)                # (rows + 1,)
        self.next_state = np.ascontiguousarray(next_state, ids)             # (nnz,)
        self.cont_prob = np.ascontiguousarray(cont_prob, np.float64)        # (nnz,) p (1 - done)
        self.expected_reward = np.ascontiguousarray(expected_reward, np.float64)  # (rows,) sum p r
        self.chunk_nnz = chunk_nnz
        counts = np.diff(indptr)
        self.branching = int(counts[0]) if len(counts) and (counts == counts[0]).all() else None
        per_row = self.branching or max(1, int(counts.mean()) if len(counts) else 1)
        # whole states per chunk, so that a chunk's Q can be maximised over actions on the spot
        self.chunk_rows = max(1, chunk_nnz // per_row // n_actions) * n_actions
        starts = indptr[0:self.n_rows:self.chunk_rows]
        ends = indptr[np.minimum(np.arange(len(starts)) * self.chunk_rows + self.chunk_rows,
                                 self.n_rows)]
        self._buf = np.empty(int((ends - starts).max()) if len(starts) else 0)
        self._q_buf = np.empty(min(self.chunk_rows, self.n_rows))
        self._native = kernels() if ids == np.int32 else None   # C takes int32 ids
        if self._native is not None:
            # the row layout and transition arrays as the kernels take them (addresses)
            self._c_rows = (0 if self.branching else self.indptr.ctypes.data, self.branching or 0,
                            *(a.ctypes.data for a in (self.next_state, self.cont_prob,
                                                      self.expected_reward)))

    @property
    def bytes_per_sweep(self) -> int:
        """Bytes of the transition arrays one sweep reads."""
        read = self.next_state.nbytes + self.cont_prob.nbytes + self.expected_reward.nbytes
        return read + (0 if self.branching else self.indptr.nbytes)

    def _chunks(self, V: np.ndarray, gamma: float, q_out: np.ndarray | None = None):
        """Yield (first row, Q of the chunk's rows) chunk after chunk; Q goes into
        ``q_out[r0:r1]`` when given, else into a chunk-sized buffer reused by the next chunk."""
        B = self.branching
        for r0 in range(0, self.n_rows, self.chunk_rows):
            r1 = min(self.n_rows, r0 + self.chunk_rows)
            a, b = int(self.indptr[r0]), int(self.indptr[r1])
            w = self._buf[:b - a]
            # mode="clip" skips numpy's per-index bounds check (next states were checked when the
            # rows were built) and, unlike the default, avoids a temporary copy of the indices.
            np.take(V, self.next_state[a:b], out=w, mode="clip")
            np.multiply(w, self.cont_prob[a:b], out=w)
            q = q_out[r0:r1] if q_out is not None else self._q_buf[:r1 - r0]
            if B is not None:
                np.copyto(q, w[0::B])
                for k in range(1, B):
                    q += w[k::B]
            else:
                np.add.reduceat(w, self.indptr[r0:r1] - a, out=q)
            q *= gamma
            q += self.expected_reward[r0:r1]
            yield r0, q

    def q_values(self, V: np.ndarray, gamma: float, out: np.ndarray | None = None) -> np.ndarray:
        """Q (rows,) = rbar + gamma * P V for this slice's rows, from V (n_states,)."""
        out = np.empty(self.n_rows) if out is None else out
        self._check_lengths(V, out, self.n_rows)
        if self._native is not None and _writable_c(out) and _plain(V):
            self._native.bellman_q(*self._c_rows, V.ctypes.data, gamma, self.n_rows,
                                   out.ctypes.data)
            return out
        for _ in self._chunks(V, gamma, out):
            pass
        return out

    def state_values(self, V: np.ndarray, gamma: float, out: np.ndarray) -> float:
        """max_a Q (hi - lo,) into ``out``; returns the largest change ``|out - V[lo:hi]|``.
        ``out`` must not share memory with ``V`` (a sweep reads only the previous sweep's V).

        Each chunk's Q is maximised, and compared with the old values, while still in cache
        (never writing the whole Q: A times the size of V)."""
        if np.may_share_memory(out, V):   # a bounds check, O(1)
            raise ValueError("state_values: out overlaps V; sweeps need a second buffer")
        self._check_lengths(V, out, self.hi - self.lo)
        A, old = self.n_actions, V[self.lo:self.hi]
        if self._native is not None and _writable_c(out) and _plain(V):
            return self._native.bellman_max(*self._c_rows, V.ctypes.data, gamma, A,
                                            self.n_rows // A, old.ctypes.data, out.ctypes.data)
        changes = [0.0]
        for r0, q in self._chunks(V, gamma):
            s0, s1 = r0 // A, (r0 + len(q)) // A
            new = max_over_actions(q, A, out[s0:s1])
            changes.append(np.max(np.abs(new - old[s0:s1]), initial=0.0))
        return float(np.max(changes))   # NaN, should one appear, propagates

    def _check_lengths(self, V: np.ndarray, out: np.ndarray, n_out: int) -> None:
        """The C kernels trust these lengths (a short ``out`` would be written past its end)."""
        if V.shape != (self.n_states,) or out.shape != (n_out,):
            raise ValueError(f"backup: V must have shape ({self.n_states},) and out ({n_out},), "
                             f"not {V.shape} and {out.shape}")

    def first(self, states: int) -> "Backup":
        """The backup of this slice's first ``states`` states (views, no copies)."""
        rows = self.n_actions * states
        a, b = int(self.indptr[0]), int(self.indptr[rows])
        sub = object.__new__(Backup)
        sub._setup(self.n_states, self.n_actions, self.lo, self.lo + states,
                   self.indptr[:rows + 1] - a, self.next_state[a:b], self.cont_prob[a:b],
                   self.expected_reward[:rows], self.chunk_nnz)
        return sub

    def restrict(self, actions: np.ndarray) -> "Backup":
        """The backup of one action per state, ``actions`` (hi - lo,): a policy's rows."""
        rows = np.arange(self.hi - self.lo) * self.n_actions + actions
        counts = self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # Entry j of the new row i sits at old position indptr_old[rows[i]] + (j - indptr[i]).
        take = np.repeat(self.indptr[rows] - indptr[:-1], counts) + np.arange(indptr[-1])
        sub = object.__new__(Backup)
        sub._setup(self.n_states, 1, self.lo, self.hi, indptr, self.next_state[take],
                   self.cont_prob[take], self.expected_reward[rows], self.chunk_nnz)
        return sub


def _plain(a: np.ndarray) -> bool:
    """Whether a C kernel may read ``a`` as a plain float64 array."""
    return a.dtype == np.float64 and a.flags.c_contiguous


def _writable_c(a: np.ndarray) -> bool:
    """Whether a C kernel may write ``a`` as a plain float64 array."""
    return _plain(a) and a.flags.writeable


def max_over_actions(q: np.ndarray, n_actions: int, out: np.ndarray) -> np.ndarray:
    """V (states,) = max_a Q, for Q flat (states * n_actions,) in row (s, a) order.

    Strided maxima: numpy's ``max(axis=1)`` over a short last axis is several times slower."""
    np.copyto(out, q[0::n_actions])
    for a in range(1, n_actions):
        np.maximum(out, q[a::n_actions], out=out)
    return out


def greedy(q: np.ndarray, n_actions: int, keep: np.ndarray | None = None,
           slack: float = 0.0) -> np.ndarray:
    """The greedy action per state (states,) from flat Q; ties go to the lowest action, or to the
    action in ``keep`` when it is within ``slack`` (or rounding) of the best.

    Policy iteration passes its policy as ``keep`` and its tolerance as ``slack``: Q comes from an
    evaluation that stops within tol, so two truly tied actions differ by noise of about that
    size, and preferring the better-looking one would swap them round after round, each round's
    sweeps flipping the sign of the noise, without the policy ever settling."""
    q = q.reshape(-1, n_actions)
    best = q.argmax(axis=1)
    if keep is None:
        return best
    states = np.arange(len(best))
    top = q[states, best]
    still_best = q[states, keep] >= top - np.maximum(slack, 1e-12 * np.maximum(1.0, np.abs(top)))
    return np.where(still_best, keep, best)
