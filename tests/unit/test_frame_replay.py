"""Frame-once replay (mpirl.replay.frames) against a naive memory of whole stacks.

A synthetic vector env of stacked random frames, with next-step autoreset, episodes of random
lengths that terminate or are truncated, and every way of filling an episode's first stack (zeros,
the first frame repeated, distinct no-op frames), feeds both the frame memory and the naive
n-step adder of whole (obs, next_obs) stacks. Every action is a unique id, so each transition the
frame memory can return is checked against the naive record of the same step, around the rings'
wrap and across episode ends.
"""
from __future__ import annotations

import numpy as np
import pytest

from mpirl.replay import NStepAdder
from mpirl.replay.buffer import transition_dtype
from mpirl.replay.frames import FrameAdder, FrameReplay, memory_bytes

K, H, W = 4, 5, 6


class StackedFrames:
    """``num_envs`` envs whose observation is the last K frames (random uint8), as
    AtariVectorEnv / FrameStackObservation give them, reset on the next step after an end."""

    def __init__(self, num_envs: int, seed: int, max_len: int = 12):
        self.rng, self.num_envs, self.max_len = np.random.default_rng(seed), num_envs, max_len
        self.obs = np.stack([self._first_stack() for _ in range(num_envs)])
        self.left = self.rng.integers(1, max_len + 1, num_envs)
        self.resetting = np.zeros(num_envs, bool)

    def _frame(self):
        return self.rng.integers(0, 256, (H, W), dtype=np.uint8)

    def _first_stack(self):
        first = self._frame()
        kind = self.rng.integers(3)
        older = (np.zeros((K - 1, H, W), np.uint8) if kind == 0 else
                 np.repeat(first[None], K - 1, 0) if kind == 1 else
                 np.stack([self._frame() for _ in range(K - 1)]))
        return np.concatenate([older, first[None]])

    def step(self):
        """(next obs, reward, terminated, truncated, valid) of one step of every env."""
        E = self.num_envs
        valid = ~self.resetting
        reward = np.where(valid, self.rng.normal(size=E), 0.0).astype(np.float32)
        terminated, truncated = np.zeros(E, bool), np.zeros(E, bool)
        nxt = self.obs.copy()
        for e in range(E):
            if self.resetting[e]:
                nxt[e] = self._first_stack()
                self.left[e] = self.rng.integers(1, self.max_len + 1)
                self.resetting[e] = False
                continue
            nxt[e] = np.concatenate([self.obs[e, 1:], self._frame()[None]])
            self.left[e] -= 1
            if self.left[e] == 0:
                terminated[e] = self.rng.random() < 0.5
                truncated[e] = not terminated[e]
                self.resetting[e] = True
        self.obs = nxt
        return nxt, reward, terminated, truncated, valid


def lane_serials(num_envs):
    """The test's own model of the layout: each step's slot serial in its lane (K - 1 leads at
    an episode's first observation)."""
    written, starting = np.zeros(num_envs, np.int64), np.ones(num_envs, bool)

    def step(valid):
        written[:] += np.where(starting, K - 1, 0)
        serial = written.copy()
        written[:] += 1
        starting[:] = ~valid
        return serial, written.copy()
    return step


@pytest.mark.parametrize("n, prioritized", [(1, False), (3, True), (5, False)])
def test_frame_replay_returns_what_a_naive_store_of_whole_stacks_returns(n, prioritized):
    E, T, gamma = 3, 40, 0.9
    env = StackedFrames(E, seed=n)
    memory = FrameReplay(E * T, E, (K, H, W), n, gamma, prioritized=prioritized)
    adder = FrameAdder(E, (K, H, W))
    naive = NStepAdder(E, n, gamma, transition_dtype((K, H, W), np.uint8))
    serials = lane_serials(E)
    expected, serial_of, tracked = {}, {}, []
    next_id = 0
    for t in range(600):                      # each lane wraps about 15 times
        obs = env.obs.copy()
        action = np.arange(next_id, next_id + E)
        next_id += E
        nxt, reward, terminated, truncated, valid = env.step()
        serial, written = serials(valid)
        for e in range(E):
            serial_of[action[e]] = (e, serial[e])
        memory.add(adder.add(obs, action, reward, nxt, terminated, truncated, valid))
        records = naive.add(obs, action, reward, nxt, terminated, truncated, valid)

        live = np.flatnonzero(memory.live.reshape(-1))
        got = memory.transitions(live)
        assert len(memory) == live.size
        for record in got:                    # every transition is exactly the naive one
            want = expected[int(record["action"])]
            for field in ("obs", "next_obs", "done"):
                np.testing.assert_array_equal(record[field], want[field])
            np.testing.assert_allclose(record["reward"], want["reward"], rtol=1e-6)
            np.testing.assert_allclose(record["discount"], want["discount"], rtol=1e-12)
        live_ids = set(got["action"].tolist())
        # a record the naive adder gave at an earlier step is a transition now (its next
        # stack's newest frame came at the latest with this step) exactly while the oldest
        # frame of its stack is still in its lane's ring
        still = []
        for a in tracked:
            lane, s = serial_of[a]
            kept = s - (K - 1) >= written[lane] - T
            assert (a in live_ids) == kept, (a, s, written[lane])
            if kept:
                still.append(a)
        tracked = still + [int(a) for a in records["action"]]
        for record in records:
            expected[int(record["action"])] = record
    # (episodes of ~6 steps here: a reset slot and 3 leads each take a good part of the ring)
    assert len(memory) > 0.4 * memory.capacity


def test_draws_pick_only_whole_transitions_with_their_probabilities():
    E, T = 2, 30
    env = StackedFrames(E, seed=7, max_len=6)
    memory = FrameReplay(E * T, E, (K, H, W), 2, 0.99, prioritized=True, alpha=1.0)
    adder = FrameAdder(E, (K, H, W))
    for t in range(80):
        obs = env.obs.copy()
        nxt, reward, terminated, truncated, valid = env.step()
        memory.add(adder.add(obs, np.full(E, t), reward, nxt, terminated, truncated, valid))
    live = np.flatnonzero(memory.live.reshape(-1))
    memory.update_priorities(live, np.arange(live.size, dtype=np.float64))
    rng = np.random.default_rng(0)
    slots, probs = memory.sample_indices(20_000, rng)
    assert memory.live.reshape(-1)[slots].all()
    share = np.bincount(slots, minlength=memory.capacity)[live] / slots.size
    p = (np.arange(live.size) + 1e-6) / (np.arange(live.size) + 1e-6).sum()
    np.testing.assert_allclose(probs, p[np.searchsorted(live, slots)], rtol=1e-9)
    assert np.abs(share - p).max() < 0.01
    # a slot retired while its batch was out keeps priority 0
    gone = live[0]
    memory.live.reshape(-1)[gone] = False
    memory.tree.update([gone], 0.0)
    memory.update_priorities(np.array([gone]), np.array([5.0]))
    assert memory.tree[[gone]][0] == 0.0


def test_a_stack_that_does_not_shift_is_refused():
    adder = FrameAdder(1, (K, H, W))
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (1, K, H, W), dtype=np.uint8)
    adder.add(obs, [0], [0.0], obs, [False], [False], [True])
    with pytest.raises(ValueError, match="shift by one frame"):
        adder.add(rng.integers(0, 256, (1, K, H, W), dtype=np.uint8), [0], [0.0], obs,
                  [False], [False], [True])


def test_bytes_per_transition_is_about_one_frame():
    memory = FrameReplay(200_000, 8, (4, 84, 84), 3, 0.99, prioritized=True)
    per_transition = memory.nbytes / memory.capacity
    assert 84 * 84 < per_transition <= 1.1 * 84 * 84
    assert memory_bytes((84, 84), memory.capacity) == memory.nbytes


def test_a_memory_too_small_for_its_stacks_is_refused():
    with pytest.raises(ValueError, match="too small"):
        FrameReplay(20, 4, (4, 84, 84), 3, 0.99)


@pytest.mark.parametrize("snapshot_at", [7, 300])   # before the rings fill, and after they wrap
def test_a_memory_restored_from_its_state_goes_on_exactly_as_the_original(snapshot_at):
    E, T, n = 3, 40, 3
    env = StackedFrames(E, seed=11)
    memory = FrameReplay(E * T, E, (K, H, W), n, 0.9, prioritized=True)
    adder = FrameAdder(E, (K, H, W))
    copy_memory, copy_adder = None, None
    rng = np.random.default_rng(0)
    for t in range(snapshot_at + 150):
        obs = env.obs.copy()
        action = np.arange(t * E, (t + 1) * E)
        step = (obs, action, *env.step())
        nxt, reward, terminated, truncated, valid = step[2:]
        memories = [(memory, adder)] + ([(copy_memory, copy_adder)] if copy_memory else [])
        for mem, add in memories:
            mem.add(add.add(obs, action, reward, nxt, terminated, truncated, valid))
        if copy_memory is not None:
            slots, _ = memory.sample_indices(8, np.random.default_rng(t))
            copy_slots, _ = copy_memory.sample_indices(8, np.random.default_rng(t))
            np.testing.assert_array_equal(slots, copy_slots)
            priorities = rng.random(8) + 0.1
            memory.update_priorities(slots, priorities)
            copy_memory.update_priorities(copy_slots, priorities)
            got, want = copy_memory.transitions(copy_slots), memory.transitions(slots)
            for field in want.dtype.names:   # (field by field: records may have padding)
                np.testing.assert_array_equal(got[field], want[field])
        if t == snapshot_at:
            # a fresh memory and adder from their states alone (as --save-replay writes them)
            saved = {k: np.array(v) for k, v in memory.state_dict().items()}
            if snapshot_at < T:
                assert saved["frames"].shape[1] < T   # a memory not yet full saves what it holds
            copy_memory = FrameReplay(E * T, E, (K, H, W), n, 0.9, prioritized=True)
            copy_memory.load_state_dict(saved)
            copy_adder = FrameAdder(E, (K, H, W))
            copy_adder.load_state_dict({k: np.array(v) for k, v in adder.state_dict().items()})
    assert len(copy_memory) == len(memory) > 0 and copy_memory.total == memory.total
    with pytest.raises(ValueError, match="another memory"):
        FrameReplay(E * 2 * T, E, (K, H, W), n, 0.9).load_state_dict(memory.state_dict())
