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

Propagating differences accumulates float64 rounding (about 1e-16 of the total per update), so
the tree is rebuilt exactly, level by level, after every ``capacity`` leaf writes.
"""
from __future__ import annotations

import numpy as np

# The top levels are searched through one cumsum over this many nodes (a level of the tree):
# cheaper than descending those levels one by one, and small enough to sum on every call.
_TOP_NODES_LOG2 = 10


class SumTree:
    """Sums of ``capacity`` non-negative leaf values (all zero at first)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"a sum-tree needs capacity >= 1, not {capacity}")
        self.capacity = int(capacity)
        self.depth = max(1, int(np.ceil(np.log2(self.capacity))))   # levels below the root
        self.leaf0 = 1 << self.depth                                  # index of leaf 0
        self.tree = np.zeros(2 * self.leaf0, dtype=np.float64)
        self._top = min(self.depth, _TOP_NODES_LOG2)                  # level solved by cumsum
        # a leaf's stored ancestors, down to the top level: node >> shift
        self._shifts = np.arange(1, self.depth - self._top + 1, dtype=np.int64)[:, None]
        self._writes_since_rebuild = 0

    # -- reading --------------------------------------------------------------------------------
    @property
    def total(self) -> float:
        """The sum of all leaves (the sum of the top level)."""
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
        # keep the last write of each repeated leaf: the last of its run in a stable sort
        order = np.argsort(idx, kind="stable")
        nodes = idx[order]
        if nodes[0] < 0 or nodes[-1] >= self.capacity:
            raise IndexError(f"leaf index out of range [0, {self.capacity})")
        last = np.empty(nodes.shape, dtype=bool)
        last[-1] = True
        np.not_equal(nodes[1:], nodes[:-1], out=last[:-1])
        values = values[order]
        if not last.all():
            nodes, values = nodes[last], values[last]
        nodes += self.leaf0
        if not (values.min() >= 0.0 and values.max() < np.inf):   # NaN fails both
            raise ValueError("sum-tree values must be finite and non-negative")
        delta = values - self.tree.take(nodes)
        self.tree.put(nodes, values)
        ancestors = nodes[None, :] >> self._shifts         # (depth - top, B'): all levels at once
        # flat 1-D indices and values: np.add.at's fast path (2-D broadcasting is 3x slower)
        np.add.at(self.tree, ancestors.ravel(), delta[None, :].repeat(len(ancestors), 0).ravel())
        self._writes_since_rebuild += nodes.size
        if self._writes_since_rebuild >= self.capacity:
            self.rebuild()

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
        # the top levels at once: which node of level `top` holds v?
        lo = 1 << self._top
        level = self.tree[lo:2 * lo]
        cumulative = np.cumsum(level)
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
        if order is None:
            return node
        found = np.empty_like(node)
        found[order] = node                            # back to the caller's order
        return found
