"""A sum-tree over non-negative leaf values, kept in ONE flat float64 numpy array.

Layout (heap order): level ``l`` holds nodes ``[2**l, 2**(l+1))``, the children of node ``i`` are
``2i`` and ``2i + 1``, and leaf ``j`` lives at ``tree[P + j]`` where ``P`` is the smallest power of
two >= capacity. Every stored internal node holds the sum of its two children, so a prefix-sum
search walks from the top level down to a leaf.

The levels above the "top level" (at most 1024 nodes, ``2**top`` of them) are never stored: one
``cumsum`` + ``searchsorted`` over that level answers all of them at once, and its sum is the
total. Below it both operations are vectorised over a whole batch, the Python loop running over
the levels, never over the batch:

- :meth:`SumTree.update` writes a batch of leaves and adds each change to all of its ancestors
  down to the top level with one ``np.add.at`` over all levels (an ancestor of several updated
  leaves receives all of their changes);
- :meth:`SumTree.find` answers a batch of prefix sums, sorted first: which top-level node
  (cumsum + searchsorted), then down the tree with a handful of in-place numpy operations per
  level.

Random reads in a 16 MiB tree miss the cache at every low level, so fewer levels is what makes it
fast (a batch of 256 from 2**20 leaves: ~10 levels instead of 20).

Both operations have a C kernel (:mod:`mpirl.native`) doing the same walk, used when it is
built: numpy needs half a dozen calls per level, each costing more than the level's arithmetic (a
prioritized draw of 256 from 1e6 with its update, as the replay memory does it: ~100 us with numpy,
~45 us with the kernels, most of that the Python around them). The numpy code below is the
fallback and the reference the tests hold the kernels to.

Propagating differences accumulates float64 rounding (about 1e-16 of the total per update), so
the tree is rebuilt exactly, level by level, after every ``capacity`` leaf writes.
"""
from __future__ import annotations

import numpy as np

from mpirl.native import kernels

# The top levels are searched through one cumsum over this many nodes (a level of the tree):
# cheaper than descending those levels one by one, and small enough to sum on every call.
_TOP_NODES_LOG2 = 10


class SumTree:
    """Sums of ``capacity`` non-negative leaf values (all zero at first)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"a sum-tree needs capacity >= 1, not {capacity}")
        self.capacity = int(capacity)
        self.depth = self._depth(self.capacity)                       # levels below the root
        self.leaf0 = 1 << self.depth                                  # index of leaf 0
        self.tree = np.zeros(2 * self.leaf0, dtype=np.float64)
        self._top = min(self.depth, _TOP_NODES_LOG2)                  # level solved by cumsum
        # a leaf's stored ancestors, down to the top level: node >> shift
        self._shifts = np.arange(1, self.depth - self._top + 1, dtype=np.int64)[:, None]
        self._writes_since_rebuild = 0
        self._native = kernels()
        if self._native is not None:
            self._tree_at = self.tree.ctypes.data
            self._grow_scratch(256)

    @staticmethod
    def _depth(capacity: int) -> int:
        return max(1, int(np.ceil(np.log2(capacity))))

    @classmethod
    def bytes_for(cls, capacity: int) -> int:
        """The bytes of a tree of ``capacity`` leaves (padded to a power of two, and every
        inner node: float64s)."""
        return 2 * (1 << cls._depth(capacity)) * 8

    def _grow_scratch(self, size: int) -> None:
        """Batch buffers the kernels read and write, with their addresses looked up once (a
        ctypes address lookup costs as much as a whole kernel call)."""
        self._scratch_idx, self._scratch_val = np.empty(size, np.int64), np.empty(size)
        self._idx_at, self._val_at = self._scratch_idx.ctypes.data, self._scratch_val.ctypes.data

    # -- reading --------------------------------------------------------------------------------
    @property
    def total(self) -> float:
        """The sum of all leaves (the sum of the top level)."""
        if self._native is not None:
            return self._native.sumtree_total(self._tree_at, 1 << self._top)
        lo = 1 << self._top
        return float(self.tree[lo:2 * lo].sum())

    @property
    def leaves(self) -> np.ndarray:
        """A read-only view of the ``capacity`` leaf values, shape (capacity,)."""
        view = self.tree[self.leaf0:self.leaf0 + self.capacity]
        view.flags.writeable = False
        return view

    def __getitem__(self, idx) -> np.ndarray:
        return self.tree.take(self.leaf0 + np.asarray(idx, dtype=np.int64))

    # -- writing --------------------------------------------------------------------------------
    def update(self, idx, values) -> None:
        """Set leaves ``idx`` (shape (B,), int) to ``values`` (shape (B,) or scalar, >= 0).

        Where an index repeats, the last value wins, as with ``a[idx] = values``.
        """
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        values = np.asarray(values, dtype=np.float64)
        if values.shape != idx.shape:  # one value for all (np.full refuses any other shape)
            values = np.full(idx.shape, values)
        if idx.size == 0:
            return
        if self._native is not None:
            self._update_native(idx, values)
        else:
            self._update_numpy(idx, values)
        self._writes_since_rebuild += idx.size
        if self._writes_since_rebuild >= self.capacity:
            self.rebuild()

    def _update_native(self, idx: np.ndarray, values: np.ndarray) -> None:
        n = idx.size
        if n > self._scratch_idx.size:
            self._grow_scratch(1 << (n - 1).bit_length())
        self._scratch_idx[:n] = idx
        self._scratch_val[:n] = values
        refused = self._native.sumtree_update(self._tree_at, self.leaf0, 1 << self._top,
                                              self.capacity, self._idx_at, self._val_at, n)
        if refused == 1:
            raise IndexError(f"leaf index out of range [0, {self.capacity})")
        if refused == 2:
            raise ValueError("sum-tree values must be finite and non-negative")

    def _update_numpy(self, idx: np.ndarray, values: np.ndarray) -> None:
        # keep the last write of each repeated leaf: the last of its run in a stable sort (a
        # batch drawn by find_fractions is already in order, and skips the sort)
        if idx.size > 1 and not (idx[1:] >= idx[:-1]).all():
            order = np.argsort(idx, kind="stable")
            idx, values = idx[order], values[order]
        if idx[0] < 0 or idx[-1] >= self.capacity:
            raise IndexError(f"leaf index out of range [0, {self.capacity})")
        last = np.empty(idx.shape, dtype=bool)
        last[-1] = True
        np.not_equal(idx[1:], idx[:-1], out=last[:-1])
        if not last.all():
            idx, values = idx[last], values[last]
        nodes = idx + self.leaf0
        if not (values.min() >= 0.0 and values.max() < np.inf):   # NaN fails both
            raise ValueError("sum-tree values must be finite and non-negative")
        delta = values - self.tree.take(nodes)
        self.tree.put(nodes, values)
        ancestors = nodes[None, :] >> self._shifts         # (depth - top, B'): all levels at once
        # flat 1-D indices and values: np.add.at's fast path (2-D broadcasting is 3x slower)
        np.add.at(self.tree, ancestors.ravel(), delta[None, :].repeat(len(ancestors), 0).ravel())

    def rebuild(self) -> None:
        """Recompute every stored internal node from the leaves (exact; O(capacity))."""
        for level in range(self.depth - 1, self._top - 1, -1):
            lo = 1 << level
            self.tree[lo:2 * lo] = self.tree[2 * lo:4 * lo:2] + self.tree[2 * lo + 1:4 * lo:2]
        self._writes_since_rebuild = 0

    # -- searching ------------------------------------------------------------------------------
    def find(self, prefix, ascending: bool = False) -> np.ndarray:
        """For each prefix sum ``v`` in [0, total), the leaf ``j`` with
        ``sum(leaves[:j]) <= v < sum(leaves[:j + 1])``; shape (B,) int64.

        Drawing ``v`` uniformly from [0, total) therefore picks leaf ``j`` with probability
        ``leaves[j] / total``. Results are clipped to [0, capacity) against rounding at the edges.
        ``ascending=True`` promises that ``prefix`` is sorted, which saves sorting it here.
        """
        v = np.array(prefix, dtype=np.float64).reshape(-1)   # a copy: v is worked on in place
        # Searched in ascending order, neighbouring prefixes share paths: searchsorted takes
        # its fast path and the descent reads memory left to right (half the time at 1e6 leaves).
        order = None if ascending else np.argsort(v)
        if order is not None:
            v = v[order]
        node = self._find_native(v)[0] if self._native is not None else \
            self._descend(v, *self._top_level())
        if order is None:
            return node
        found = np.empty_like(node)
        found[order] = node                            # back to the caller's order
        return found

    def find_fractions(self, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``find(fractions * total)`` for sorted ``fractions`` in [0, 1), and each found leaf's
        share of the total: (leaves int64 (B,), probabilities float64 (B,)).

        A prioritized draw in one call: the top level is summed once, for the total and the
        search alike. ``fractions`` must be ascending (it is overwritten).
        """
        if self._native is not None:
            total = self.total
            leaves, probs = self._find_native(np.multiply(fractions, total, out=fractions))
            probs /= total
            return leaves, probs
        level, cumulative = self._top_level()
        total = cumulative[-1]
        v = np.multiply(fractions, total, out=fractions)
        node = self._descend(v, level, cumulative)
        probs = self.tree.take(node + self.leaf0)
        probs /= total
        return node, probs

    def _find_native(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The leaves holding the ascending prefix sums ``v``, and their values (new arrays)."""
        n = v.size
        if n > self._scratch_idx.size:
            self._grow_scratch(1 << (n - 1).bit_length())
        self._scratch_val[:n] = v
        self._native.sumtree_find(self._tree_at, 1 << self._top, self.leaf0, self.capacity,
                                  self._val_at, n, self._idx_at, self._val_at)
        return self._scratch_idx[:n].copy(), self._scratch_val[:n].copy()

    def _top_level(self) -> tuple[np.ndarray, np.ndarray]:
        """The top stored level (a view) and its running sum (whose last entry is the total)."""
        lo = 1 << self._top
        level = self.tree[lo:2 * lo]
        return level, np.cumsum(level)

    def _descend(self, v: np.ndarray, level: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
        """The leaves holding the ascending prefix sums ``v`` (overwritten)."""
        # the top levels at once: which node of level `top` holds v?
        lo = level.size
        node = np.searchsorted(cumulative, v, side="right")
        np.minimum(node, lo - 1, out=node)
        v -= cumulative.take(node) - level.take(node)  # the prefix left of that node
        node += lo
        # then one level at a time: go right when v is past the left child's sum
        left = np.empty_like(v)
        go_right = np.empty(v.shape, dtype=bool)
        for _ in range(self.depth - self._top):
            np.add(node, node, out=node)               # left child
            self.tree.take(node, out=left)
            np.greater_equal(v, left, out=go_right)
            np.multiply(left, go_right, out=left)      # what going right skips (fastest form)
            np.subtract(v, left, out=v)
            node += go_right
        node -= self.leaf0
        np.minimum(node, self.capacity - 1, out=node)
        return node
