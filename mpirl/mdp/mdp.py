"""Tabular MDPs as sparse row arrays (CSR), and the three places they come from.

An MDP with S states and A actions has S * A rows, row ``s * A + a`` for the pair (s, a). Row i's
transitions are the entries ``indptr[i]:indptr[i+1]`` of the flat arrays ``next_state``, ``prob``,
``reward`` and ``done``: P(next_state | s, a) = prob, reward R(s, a, next_state), and whether the
episode ends there (then nothing is bootstrapped from the next state).

A *source* hands out the rows of any contiguous range of states, ``source.rows(lo, hi)``, so
each rank materialises only its own slice. Sources:

* :class:`TableMDP` -- a whole table in memory, e.g. a gymnasium toy-text env's ``P`` dict
  (:func:`load_gym`);
* :class:`RandomMDP` -- S states, A actions, B random successors per (s, a); every entry is a
  hash of its global index, so any slice is generated alone and identically at any rank count;
* :class:`GridWorld` -- an N x N slippery grid with walls and a goal in the far corner.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np

from mpirl.errors import ConfigError

# Actions of a grid as (row step, column step), FrozenLake's order: left, down, right, up.
GRID_MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))


@dataclass
class Transitions:
    """The rows of states ``[lo, hi)`` of an MDP, in CSR form.

    Shapes: ``indptr`` (rows + 1,) int64 starting at 0, with rows = (hi - lo) * n_actions;
    ``next_state`` (nnz,) global state ids, int32 (int64 past 2**31 states); ``prob``,
    ``reward`` (nnz,) float64; ``done`` (nnz,) bool.
    """

    n_states: int
    n_actions: int
    lo: int
    hi: int
    indptr: np.ndarray
    next_state: np.ndarray
    prob: np.ndarray
    reward: np.ndarray
    done: np.ndarray

    @property
    def n_rows(self) -> int:
        return (self.hi - self.lo) * self.n_actions

    def row(self, state: int, action: int) -> slice:
        i = (state - self.lo) * self.n_actions + action
        return slice(int(self.indptr[i]), int(self.indptr[i + 1]))

    def check(self) -> "Transitions":
        """Raise ValueError unless these rows are a valid piece of an MDP."""
        if self.indptr.shape != (self.n_rows + 1,) or self.indptr[0] != 0:
            raise ValueError(f"indptr must have {self.n_rows + 1} entries starting at 0")
        counts = np.diff(self.indptr)
        if (counts < 1).any():
            s, a = divmod(int(np.flatnonzero(counts < 1)[0]), self.n_actions)
            raise ValueError(f"(state {self.lo + s}, action {a}) has no transitions")
        nnz = int(self.indptr[-1])
        if not all(len(x) == nnz for x in (self.next_state, self.prob, self.reward, self.done)):
            raise ValueError(f"next_state, prob, reward and done must all have {nnz} entries")
        if nnz and (self.next_state.min() < 0 or self.next_state.max() >= self.n_states):
            raise ValueError(f"next states must lie in [0, {self.n_states})")
        if (self.prob < 0).any() or not np.isfinite(self.reward).all():
            raise ValueError("probabilities must be >= 0 and rewards finite")
        sums = np.add.reduceat(self.prob, self.indptr[:-1]) if nnz else np.zeros(0)
        if not np.allclose(sums, 1.0, rtol=0, atol=1e-9):
            i = int(np.argmax(np.abs(sums - 1.0)))
            s, a = divmod(i, self.n_actions)
            raise ValueError(f"probabilities of (state {self.lo + s}, action {a}) sum to "
                             f"{sums[i]!r}, not 1")
        return self


def _state_dtype(n_states: int):
    return np.int32 if n_states < 2**31 else np.int64


def _regular_rows(n_rows: int, branching: int) -> np.ndarray:
    return np.arange(0, (n_rows + 1) * branching, branching, dtype=np.int64)


# -- a whole table in memory (gymnasium toy-text) ----------------------------------------------
@dataclass
class GridLayout:
    """How states sit on a picture: state = row * ncol + col; ``moves[a]`` = (drow, dcol) of
    action a; ``labels`` (nrow, ncol) single characters (e.g. FrozenLake's S F H G) or None."""

    nrow: int
    ncol: int
    moves: tuple
    labels: np.ndarray | None = None


class TableMDP:
    """An MDP whose every row is held in memory; :meth:`rows` hands out views of slices."""

    def __init__(self, table: Transitions, name: str, start: np.ndarray,
                 layout: GridLayout | None = None):
        self.table = table.check()
        self.name = name
        self.n_states, self.n_actions = table.n_states, table.n_actions
        self.start = start  # (n_states,) initial state distribution
        self.layout = layout

    def rows(self, lo: int, hi: int) -> Transitions:
        t, A = self.table, self.n_actions
        a, b = int(t.indptr[lo * A]), int(t.indptr[hi * A])
        return Transitions(t.n_states, A, lo, hi, t.indptr[lo * A:hi * A + 1] - a,
                           t.next_state[a:b], t.prob[a:b], t.reward[a:b], t.done[a:b])

    @property
    def success_reward(self) -> float | None:
        """The best reward of a transition that ends the episode (reaching FrozenLake's goal,
        Taxi's drop-off, CliffWalking's goal): an episode that ends with it counts as a success."""
        ends = self.table.done
        return float(self.table.reward[ends].max()) if ends.any() else None


def table_from_P(P: dict, n_states: int, n_actions: int) -> Transitions:
    """CSR rows from a gymnasium toy-text table ``P[s][a] = [(prob, next, reward, done), ...]``.

    The only Python loop over states in this package: it runs once, when a table is loaded.
    """
    counts = np.zeros(n_states * n_actions, dtype=np.int64)
    flat: list[tuple] = []
    for s in range(n_states):
        for a in range(n_actions):
            try:
                entries = P[s][a]
            except (KeyError, IndexError, TypeError):
                raise ValueError(f"P has no entry for (state {s}, action {a})") from None
            counts[s * n_actions + a] = len(entries)
            flat.extend(entries)
    cols = list(zip(*flat)) if flat else [(), (), (), ()]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Transitions(n_states, n_actions, 0, n_states, indptr,
                       np.asarray(cols[1], dtype=_state_dtype(n_states)),
                       np.asarray(cols[0], dtype=np.float64),
                       np.asarray(cols[2], dtype=np.float64),
                       np.asarray(cols[3], dtype=bool))


def parse_env_kwargs(text: str | None) -> dict:
    """``"map_name=8x8,is_slippery=False"`` -> {"map_name": "8x8", "is_slippery": False}.

    Values are Python literals where they parse as one (numbers, True/False/None), else strings.
    """
    out: dict = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"--env-kwargs: expected key=value, not {item.strip()!r}")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def make_env(env_id: str, env_kwargs: dict, **extra):
    """``gymnasium.make`` with bad ids and keyword arguments turned into ConfigError."""
    import gymnasium as gym

    try:
        return gym.make(env_id, **env_kwargs, **extra)
    except Exception as exc:  # gymnasium raises many kinds (NameNotFound, TypeError, ...)
        raise ConfigError(f"--env {env_id} with {env_kwargs or 'no keyword arguments'}: "
                          f"cannot make it ({type(exc).__name__}: {exc})") from None


def load_gym(env_id: str, env_kwargs: dict | None = None) -> TableMDP:
    """The MDP of a gymnasium environment that exposes its transition table ``P``."""
    env_kwargs = env_kwargs or {}
    env = make_env(env_id, env_kwargs)
    try:
        core = env.unwrapped
        n_states = getattr(env.observation_space, "n", None)
        n_actions = getattr(env.action_space, "n", None)
        if not isinstance(getattr(core, "P", None), dict) or n_states is None or n_actions is None:
            raise ConfigError(f"--env {env_id} has no transition table P over discrete states and "
                              "actions (it needs one, like the toy-text envs FrozenLake-v1, "
                              "Taxi-v4, CliffWalking-v1)")
        try:
            table = table_from_P(core.P, int(n_states), int(n_actions)).check()
        except ValueError as exc:
            raise ConfigError(f"--env {env_id}: its transition table P is not usable: {exc}")
        start = getattr(core, "initial_state_distrib", None)
        if start is None or np.shape(start) != (n_states,):
            start = np.zeros(n_states)
            start[int(env.reset(seed=0)[0])] = 1.0
        kwargs = ",".join(f"{k}={v}" for k, v in sorted(env_kwargs.items()))
        name = env_id + (f"[{kwargs}]" if kwargs else "")
        return TableMDP(table, name, np.asarray(start, dtype=np.float64),
                        _gym_layout(core, int(n_states)))
    finally:
        env.close()


def _gym_layout(core, n_states: int) -> GridLayout | None:
    """Where the env's states sit on a grid, for the picture; None if they do not (Taxi's
    ``desc`` is a drawing of its map, not one cell per state)."""
    desc = getattr(core, "desc", None)
    if desc is not None and np.ndim(desc) == 2 and np.size(desc) == n_states:
        # FrozenLake: left, down, right, up
        labels = np.char.decode(np.asarray(desc), "ascii") if desc.dtype.kind == "S" else desc
        return GridLayout(desc.shape[0], desc.shape[1], GRID_MOVES, np.asarray(labels))
    shape = getattr(core, "shape", None)
    if type(core).__name__ == "CliffWalkingEnv" and np.prod(shape or 0) == n_states:
        # up, right, down, left
        labels = np.full(shape, " ")
        labels[-1, 0], labels[-1, 1:-1], labels[-1, -1] = "S", "C", "G"
        return GridLayout(shape[0], shape[1], ((-1, 0), (0, 1), (1, 0), (0, -1)), labels)
    return None


# -- generated MDPs ------------------------------------------------------------------------------
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def hash_uniform(key: int, index: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1), one per uint64 ``index``: splitmix64 of (key, index).

    A pure function of the index, so any slice of a generated MDP is the same whichever rank
    makes it and however the states are split.
    """
    z = index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(key % 2**64)
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _stream_key(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0])


class RandomMDP:
    """S states, A actions, B successors per (s, a) drawn uniformly over all states; transition
    probabilities Dirichlet(1, ..., 1), rewards uniform in [0, 1); no state ends an episode.
    Start state 0."""

    BLOCK = 1 << 15  # states generated at a time: bounds the temporaries to a few MiB

    def __init__(self, n_states: int, n_actions: int, branching: int, seed: int = 0):
        self.n_states, self.n_actions, self.branching, self.seed = \
            n_states, n_actions, branching, seed
        self.name = f"random[S={n_states},A={n_actions},B={branching},seed={seed}]"
        self.keys = [_stream_key(seed, stream) for stream in range(3)]
        self.start = 0
        self.layout = None
        self.success_reward = None

    def rows(self, lo: int, hi: int) -> Transitions:
        A, B = self.n_actions, self.branching
        n_rows = (hi - lo) * A
        nnz = n_rows * B
        nxt = np.empty(nnz, dtype=_state_dtype(self.n_states))
        prob = np.empty(nnz)
        reward = np.empty(nnz)
        for s0 in range(lo, hi, self.BLOCK):
            s1 = min(hi, s0 + self.BLOCK)
            a, b = (s0 - lo) * A * B, (s1 - lo) * A * B
            index = np.arange(s0 * A * B, s1 * A * B, dtype=np.uint64)
            nxt[a:b] = (hash_uniform(self.keys[0], index) * self.n_states).astype(nxt.dtype)
            # -log(U) is Exp(1); normalised per row that is a Dirichlet(1, ..., 1) draw.
            weight = -np.log1p(-hash_uniform(self.keys[1], index)).reshape(-1, B)
            prob[a:b] = (weight / weight.sum(axis=1, keepdims=True)).reshape(-1)
            reward[a:b] = hash_uniform(self.keys[2], index)
        return Transitions(self.n_states, A, lo, hi, _regular_rows(n_rows, B), nxt, prob, reward,
                           np.zeros(nnz, dtype=bool))


class GridWorld:
    """An N x N grid (state = row * N + col), start top-left, goal bottom-right.

    Each action moves one cell (left, down, right, up) with probability 1 - slip, and to either
    side of it with slip / 2 each; moving into a wall or off the grid stays put. Entering the goal
    pays 1 and ends the episode; every other step pays 0, so the discount makes shorter routes
    better. About ``wall_fraction`` of the cells are walls (never the start or the goal), placed by
    ``seed``; walls and the goal are absorbing states worth 0.
    """

    def __init__(self, size: int, seed: int = 0, slip: float = 0.2, wall_fraction: float = 0.2):
        self.size, self.seed, self.slip, self.wall_fraction = size, seed, slip, wall_fraction
        self.n_states, self.n_actions = size * size, len(GRID_MOVES)
        self.name = f"gridworld[N={size},seed={seed},slip={slip}]"
        self.goal = self.n_states - 1
        self.start = 0
        self.success_reward = 1.0
        self._wall_key = _stream_key(seed, 100)
        self.layout = GridLayout(size, size, GRID_MOVES, None)

    def is_wall(self, states: np.ndarray) -> np.ndarray:
        wall = hash_uniform(self._wall_key, states) < self.wall_fraction
        return wall & (states != self.start) & (states != self.goal)

    def labels(self) -> np.ndarray:
        states = np.arange(self.n_states, dtype=np.uint64)
        labels = np.where(self.is_wall(states), "W", " ").reshape(self.size, self.size)
        labels[0, 0], labels[-1, -1] = "S", "G"
        return labels

    def rows(self, lo: int, hi: int) -> Transitions:
        N, A = self.size, self.n_actions
        state = np.repeat(np.arange(lo, hi, dtype=np.int64), A)           # (rows,)
        action = np.tile(np.arange(A), hi - lo)                            # (rows,)
        row, col = divmod(state, N)
        # Three outcomes per row: the intended move, then the two moves at right angles to it.
        outcome = np.stack([action, (action + 1) % A, (action + 3) % A], axis=1)  # (rows, 3)
        moves = np.asarray(GRID_MOVES)
        r = np.clip(row[:, None] + moves[outcome, 0], 0, N - 1)
        c = np.clip(col[:, None] + moves[outcome, 1], 0, N - 1)
        nxt = r * N + c
        nxt = np.where(self.is_wall(nxt.astype(np.uint64)), state[:, None], nxt)
        prob = np.broadcast_to([1.0 - self.slip, self.slip / 2, self.slip / 2], nxt.shape).copy()
        absorbing = self.is_wall(state.astype(np.uint64)) | (state == self.goal)
        nxt[absorbing] = state[absorbing, None]
        prob[absorbing] = [1.0, 0.0, 0.0]
        enters_goal = (nxt == self.goal) & ~absorbing[:, None]
        return Transitions(self.n_states, A, lo, hi, _regular_rows(len(state), 3),
                           nxt.reshape(-1).astype(_state_dtype(self.n_states)), prob.reshape(-1),
                           enters_goal.reshape(-1).astype(np.float64), enters_goal.reshape(-1))
