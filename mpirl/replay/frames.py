"""Replay memory for stacked pixel observations that stores each frame once (Dopamine, DQN Zoo).

Two consecutive observations of a frame stack share K - 1 of their K frames, and a transition's
next observation is its successor's observation: a memory of (obs, next_obs) records of 4 stacked
84x84 frames keeps 8 copies of every frame. This one keeps one, and rebuilds the stacks from
indices when a batch is sampled.

Layout. The memory is ``lanes`` rings of ``slots_per_lane`` *slots*, one lane per env that feeds it
(an env of this rank; ``--replay-sharing allgather``: of every rank). A lane receives, in order,
one slot per env step:

    frame      (H, W) uint8   the newest frame of the observation the step acted in
    action     the action taken (int64)
    reward     float32, the reward after it (clipped or not, as learning sees it)
    ended      the episode ended after it (terminated or truncated)
    terminated it ended in a terminal state (no bootstrap)
    acted      the step acted (False: a reset step, whose frame is the final observation of the
               episode before; or a *lead* slot, below)

and at the first observation of every episode first the K - 1 older frames of that stack, as
*lead* slots that did not act. So the K slots that end at any slot hold exactly the stack it saw,
however the env filled an episode's first stack (zeros, the first frame repeated, the no-op
frames), and a stack never reaches across an episode's start. An episode's final observation
(bootstrapped from when it was truncated) is the reset step's slot.

Transitions. The slot of step ``s`` becomes a transition once its n-step window is complete: k =
n steps later, or at the end of its episode (k < n). Then its return ``sum_j g^j r_{s+j}``, k and
whether the episode terminated are stored with it, and it becomes sampleable:

    obs = frames[s-K+1 .. s], next_obs = frames[s+k-K+1 .. s+k], reward, done, discount = g^k

It stops being sampleable when the oldest frame of its stack is about to be overwritten. The
sum-tree holds p^alpha of sampleable slots (uniform memories: 1) and 0 for the rest, so a draw
never picks a slot that is not a whole transition.

:meth:`transitions` returns the records :func:`~mpirl.replay.buffer.transition_dtype` defines,
with uint8 stacks: everything downstream (the sharing modes, the learner) takes them as it takes a
:class:`~mpirl.replay.buffer.ReplayBuffer`'s.

Bytes per transition: H*W for the frame, 22 for the rest of the slot, 16 to 32 for the sum-tree
(its leaves padded to a power of two, and the inner nodes; uniform memories use it too, with 1 for
every transition), and (K - 1) H*W per episode for the leads: 7,095 for Atari at 1e6.
"""
from __future__ import annotations

import numpy as np

from mpirl.replay.buffer import PRIORITY_EPS, transition_dtype
from mpirl.replay.sumtree import SumTree


def slot_dtype(frame_shape: tuple) -> np.dtype:
    """One row of what an env step adds to a lane (:class:`FrameAdder` makes them, the sharing
    modes ship them): the lane, then a slot."""
    return np.dtype([("lane", np.int32), ("frame", np.uint8, tuple(frame_shape)),
                     ("action", np.int64), ("reward", np.float32), ("ended", np.bool_),
                     ("terminated", np.bool_), ("acted", np.bool_)], align=True)


class FrameAdder:
    """Turns a vector env's steps into slot rows for lanes ``lane_offset .. + num_envs``.

    :meth:`add` takes the same arguments as :class:`~mpirl.replay.nstep.NStepAdder`'s: one step of
    every env, ``obs`` (num_envs, K, H, W) uint8 the observation acted in. (``next_obs`` is not
    needed: it arrives as the next step's ``obs``.) The first observation of an episode (after a
    reset step, and the very first) brings its K - 1 older frames as lead rows; every later one
    must be its predecessor shifted by one frame, or the env is not a frame stack and the memory
    could not rebuild what the agent saw: a ValueError says so.
    """

    def __init__(self, num_envs: int, obs_shape: tuple, lane_offset: int = 0):
        self.stack, *frame_shape = obs_shape
        self.dtype = slot_dtype(frame_shape)
        self.lanes = lane_offset + np.arange(num_envs, dtype=np.int32)
        self.starting = np.ones(num_envs, bool)           # the next obs opens an episode
        self.previous = np.zeros((num_envs, *obs_shape), np.uint8)

    def add(self, obs, action, reward, next_obs, terminated, truncated, valid=None) -> np.ndarray:
        obs = np.asarray(obs)
        valid = np.ones(len(self.lanes), bool) if valid is None else np.asarray(valid, bool)
        continuing = ~self.starting
        if continuing.any() and not np.array_equal(obs[continuing, :-1],
                                                   self.previous[continuing, 1:]):
            raise ValueError("frame-once replay needs stacked frames that shift by one frame "
                             "each step; this env's observations do not (use an env without "
                             "frame stacking and --replay-sharing with a record memory)")
        leads = np.flatnonzero(self.starting)
        rows = np.zeros(leads.size * (self.stack - 1) + len(self.lanes), dtype=self.dtype)
        k = self.stack - 1
        # each starting env's lead rows, then every env's step row: a lane's rows stay in order
        lead_rows = rows[:leads.size * k].reshape(leads.size, k)
        lead_rows["lane"] = self.lanes[leads, None]
        lead_rows["frame"] = obs[leads, :-1]
        steps = rows[leads.size * k:]
        steps["lane"] = self.lanes
        steps["frame"] = obs[:, -1]
        steps["action"] = action
        steps["reward"] = reward
        steps["ended"] = (np.asarray(terminated) | np.asarray(truncated)) & valid
        steps["terminated"] = np.asarray(terminated) & valid
        steps["acted"] = valid
        self.previous[...] = obs
        self.starting = ~valid      # a reset step (valid False) returns an episode's first obs
        return rows

    def state_dict(self) -> dict[str, np.ndarray]:
        """Each env's last observation and whether its next one opens an episode."""
        return {"starting": self.starting, "previous": self.previous}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.starting = np.array(state["starting"], bool)
        self.previous[...] = state["previous"]


# Per slot besides its frame: the step (action, reward, ended, terminated, acted), then what
# completion stores (the n-step return, its length k, 0 while it is not a transition; whether it
# ends in a terminal state) and whether the slot is sampleable now.
SLOT_FIELDS = {"action": np.int64, "reward": np.float32, "ended": np.bool_,
               "terminated": np.bool_, "acted": np.bool_, "nstep_return": np.float32,
               "k": np.uint8, "done": np.bool_, "live": np.bool_}


def memory_bytes(frame_shape: tuple, capacity: int) -> int:
    """What a :class:`FrameReplay` of ``capacity`` transitions of ``frame_shape`` frames holds,
    sum-tree included."""
    slot = int(np.prod(frame_shape)) + sum(np.dtype(t).itemsize for t in SLOT_FIELDS.values())
    return slot * capacity + SumTree.bytes_for(capacity)


class FrameReplay:
    """``capacity`` transitions of K stacked frames of ``obs_shape[1:]``, each frame stored once,
    over ``lanes`` lanes (see the module's docstring); n-step returns with ``n`` and ``gamma``.
    The same calls as :class:`~mpirl.replay.buffer.ReplayBuffer`: add, sample_indices,
    transitions, update_priorities, total, size, prioritized."""

    def __init__(self, capacity: int, lanes: int, obs_shape: tuple, n: int, gamma: float,
                 prioritized: bool = True, alpha: float = 0.6):
        self.stack, *frame_shape = obs_shape
        self.obs_shape, self.n, self.gamma = tuple(obs_shape), int(n), float(gamma)
        self.lanes = int(lanes)
        self.slots_per_lane = T = -(-int(capacity) // self.lanes)
        if T < 2 * (self.stack + self.n):
            raise ValueError(f"a replay memory of {capacity} transitions over {lanes} envs is too "
                             f"small for stacks of {self.stack} and {n}-step returns")
        self.capacity = self.lanes * T
        self.prioritized, self.alpha = prioritized, alpha
        self.frames = np.zeros((self.lanes, T, *frame_shape), np.uint8)
        for name, dtype in SLOT_FIELDS.items():          # self.action, ... self.live: (lanes, T)
            setattr(self, name, np.zeros((self.lanes, T), dtype))
        self.written = np.zeros(self.lanes, np.int64)    # slots ever written, per lane
        self.tree = SumTree(self.capacity)
        self.max_priority = 1.0
        self.size = 0                                    # sampleable transitions
        self.record_dtype = transition_dtype(self.obs_shape, np.uint8)
        self._powers = self.gamma ** np.arange(self.n + 1)

    def __len__(self) -> int:
        return self.size

    @property
    def total(self) -> float:
        return self.tree.total if self.prioritized else float(self.size)

    @property
    def nbytes(self) -> int:
        return self.frames.nbytes + self.tree.tree.nbytes + sum(
            getattr(self, name).nbytes for name in SLOT_FIELDS)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything the memory holds, as arrays (mpirl.replay.snapshot writes them to disk):
        the slots written so far (a memory not yet full saves only those), the sum-tree, the
        counters."""
        filled = int(min(self.slots_per_lane, self.written.max()))
        state = {name: getattr(self, name)[:, :filled] for name in ("frames", *SLOT_FIELDS)}
        state.update(written=self.written, tree=self.tree.tree,
                     tree_writes=np.array([self.tree._writes_since_rebuild], np.int64),
                     counters=np.array([self.size, self.lanes, self.slots_per_lane], np.int64),
                     max_priority=np.array([self.max_priority]))
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        size, lanes, slots = (int(c) for c in state["counters"])
        if (lanes, slots) != (self.lanes, self.slots_per_lane) or \
                state["frames"].shape[2:] != self.frames.shape[2:]:
            raise ValueError("a replay snapshot of another memory's lanes, capacity or frames")
        filled = state["frames"].shape[1]
        for name in ("frames", *SLOT_FIELDS):
            getattr(self, name)[:, :filled] = state[name]
        self.written[:] = state["written"]
        self.tree.tree[:] = state["tree"]   # in place: the native kernels hold its address
        self.tree._writes_since_rebuild = int(state["tree_writes"][0])
        self.size, self.max_priority = size, float(state["max_priority"][0])

    # -- adding -----------------------------------------------------------------------------------
    def add(self, rows: np.ndarray) -> None:
        """Write slot rows (:func:`slot_dtype`, from :class:`FrameAdder`) in order; each lane's
        last row of the call is its step (any before it are leads)."""
        if rows.size == 0:
            return
        T, lane = self.slots_per_lane, rows["lane"].astype(np.int64)
        # each row's serial in its lane: rows of one lane take consecutive serials, in order
        order = np.argsort(lane, kind="stable")
        sorted_lanes = lane[order]
        first = np.searchsorted(sorted_lanes, sorted_lanes, side="left")
        serial = np.empty_like(lane)
        serial[order] = self.written[sorted_lanes] + np.arange(lane.size) - first
        before = self.written.copy()
        np.add.at(self.written, lane, 1)
        pos = serial % T
        self._forget(lane, pos)
        self.frames[lane, pos] = rows["frame"]
        for name in ("action", "reward", "ended", "terminated", "acted"):
            getattr(self, name)[lane, pos] = rows[name]
        self.k[lane, pos] = 0
        stepped = np.flatnonzero(self.written > before)
        self._complete(stepped, self.written[stepped] - 1)
        self._retire(stepped, before[stepped])

    def _set_live(self, lane: np.ndarray, pos: np.ndarray, live: bool) -> None:
        change = self.live[lane, pos] != live
        lane, pos = lane[change], pos[change]
        if lane.size == 0:
            return
        self.live[lane, pos] = live
        self.size += lane.size if live else -lane.size
        value = (self.max_priority ** self.alpha if self.prioritized else 1.0) if live else 0.0
        self.tree.update(lane * self.slots_per_lane + pos, value)

    def _forget(self, lane: np.ndarray, pos: np.ndarray) -> None:
        """Slots about to be overwritten stop being transitions (already so in normal use:
        :meth:`_retire` took them out K - 1 writes earlier)."""
        self._set_live(lane, pos, False)

    def _complete(self, lanes: np.ndarray, newest: np.ndarray) -> None:
        """The slots of ``lanes`` whose window the slot ``newest`` (a serial per lane) completes:
        the one n back, and all still waiting when the slot before it ended an episode."""
        n, T = self.n, self.slots_per_lane
        back = np.arange(n, 0, -1)                         # candidates newest-n .. newest-1
        serial = newest[:, None] - back[None, :]           # (L', n)
        lane = np.broadcast_to(lanes[:, None], serial.shape)
        pos = serial % T
        exists = serial >= np.maximum(0, newest[:, None] - T + 1)
        waiting = exists & self.acted[lane, pos] & (self.k[lane, pos] == 0)
        ended_last = self.ended[lanes, (newest - 1) % T]    # the slot before newest ended
        completes = waiting & ((back == n)[None, :] | ended_last[:, None])
        if not completes.any():
            return
        # returns R_i = r_i + g R_{i+1} over the window (waiting slots are one episode's steps)
        rewards = np.where(waiting, self.reward[lane, pos], 0.0).astype(np.float64)
        returns = np.zeros_like(rewards)
        running = np.zeros(rewards.shape[0])
        for i in range(n - 1, -1, -1):
            running = rewards[:, i] + self.gamma * running
            returns[:, i] = running
        ls, ps = lane[completes], pos[completes]
        ks = np.broadcast_to(back[None, :], serial.shape)[completes]
        self.nstep_return[ls, ps] = returns[completes]
        self.k[ls, ps] = ks
        self.done[ls, ps] = np.broadcast_to(
            self.terminated[lanes, (newest - 1) % T][:, None], serial.shape)[completes]
        # a slot whose stack is about to leave the ring is not made live
        oldest_kept = (self.written[lanes] - T + self.stack - 1)[:, None]
        keep = completes & (serial >= oldest_kept)
        self._set_live(lane[keep], pos[keep], True)

    def _retire(self, lanes: np.ndarray, before: np.ndarray) -> None:
        """Slots whose stack's oldest frame the next write overwrites stop being transitions:
        serials in [before - T + K - 1, written - T + K - 1) of each lane."""
        T, K = self.slots_per_lane, self.stack
        first = np.maximum(before - T + K - 1, 0)
        last = self.written[lanes] - T + K - 1
        width = int((last - first).max(initial=0))
        if width <= 0:
            return
        serial = first[:, None] + np.arange(width)[None, :]
        inside = serial < last[:, None]
        lane = np.broadcast_to(lanes[:, None], serial.shape)[inside]
        self._set_live(lane, serial[inside] % T, False)

    # -- sampling ---------------------------------------------------------------------------------
    def sample_indices(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``count`` transitions drawn independently (slot ids), and each one's probability."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay memory")
        slots = np.empty(count, np.int64)
        todo = np.arange(count)
        while todo.size:   # a draw on the edge of a zero leaf (rounding) is drawn again
            draws = rng.random(todo.size)
            draws.sort()
            found, _ = self.tree.find_fractions(draws)
            slots[todo] = found
            todo = todo[~self.live.reshape(-1)[found]]
        probs = self.tree[slots] / self.tree.total
        return slots, probs

    def transitions(self, slots: np.ndarray) -> np.ndarray:
        """The records of ``slots``: stacks rebuilt from their frames."""
        T, K = self.slots_per_lane, self.stack
        lane, pos = np.divmod(np.asarray(slots, np.int64), T)
        out = np.empty(lane.size, dtype=self.record_dtype)
        window = np.arange(1 - K, 1)
        out["obs"] = self.frames[lane[:, None], (pos[:, None] + window) % T]
        k = self.k[lane, pos].astype(np.int64)
        out["next_obs"] = self.frames[lane[:, None], ((pos + k)[:, None] + window) % T]
        out["action"] = self.action[lane, pos]
        out["reward"] = self.nstep_return[lane, pos]
        out["done"] = self.done[lane, pos]
        out["discount"] = self._powers[k]
        return out

    def update_priorities(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """As ReplayBuffer's; a slot no longer sampleable (retired while its batch was out)
        keeps priority 0."""
        if not self.prioritized:
            return
        slots = np.asarray(slots, np.int64)
        priorities = np.abs(np.asarray(priorities, dtype=np.float64)) + PRIORITY_EPS
        self.max_priority = max(self.max_priority, float(priorities.max(initial=0.0)))
        live = self.live.reshape(-1)[slots]
        self.tree.update(slots[live], priorities[live] ** self.alpha)
