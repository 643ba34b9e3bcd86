"""Splitting a list of layers into consecutive pipeline stages.

The unit of splitting is a *block*: a layer with parameters together with the parameter-free
layers that follow it (``Linear, Tanh`` is one block), so no stage is ever just an activation.
A partition is the number of blocks per stage, e.g. ``[2, 1]``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # torch is not needed to parse or check a partition
    import torch.nn as nn


def blocks_of(layers: Sequence[nn.Module]) -> list[list[nn.Module]]:
    """Group ``layers`` into blocks: each parameterised layer starts a new block; parameter-free
    layers join the block before them (or the first block, if they lead)."""
    blocks: list[list[nn.Module]] = []
    for layer in layers:
        has_params = any(True for _ in layer.parameters())
        if has_params or not blocks:
            blocks.append([layer])
        else:
            blocks[-1].append(layer)
    if len(blocks) > 1 and not any(True for m in blocks[0] for _ in m.parameters()):
        blocks[1] = blocks[0] + blocks[1]  # a leading parameter-free layer joins the first block
        blocks.pop(0)
    return blocks


def param_count(modules: Sequence[nn.Module]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def balanced(costs: Sequence[float], stages: int) -> list[int]:
    """Blocks per stage that minimise the largest stage cost (each stage gets >= 1 block).

    Exact dynamic programme over contiguous splits; among equally good splits the later stages
    get fewer blocks (the last stage also computes the loss).
    """
    n = len(costs)
    if not 1 <= stages <= n:
        raise ValueError(f"cannot split {n} layer block(s) into {stages} stages "
                         "(each stage needs at least one layer with parameters)")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    # best[k][i]: the smallest max-stage cost of the first i blocks split into k stages
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0.0
    for k in range(1, stages + 1):
        for i in range(k, n + 1):
            for j in range(i - 1, k - 2, -1):  # last stage holds blocks j..i-1
                value = max(best[k - 1][j], prefix[i] - prefix[j])
                if value < best[k][i]:
                    best[k][i], cut[k][i] = value, j
    sizes, i = [], n
    for k in range(stages, 0, -1):
        j = cut[k][i]
        sizes.append(i - j)
        i = j
    return sizes[::-1]


def parse_explicit(spec: str | Sequence[int], blocks: int, stages: int) -> list[int]:
    """Blocks per stage from ``"2,1"`` (or a list); ValueError unless it covers all blocks."""
    try:
        sizes = [int(s) for s in (spec.split(",") if isinstance(spec, str) else spec)]
    except ValueError:
        raise ValueError(f"--partition {spec!r}: expected comma-separated layer counts, e.g. 2,1")
    if len(sizes) != stages or any(s < 1 for s in sizes) or sum(sizes) != blocks:
        raise ValueError(f"--partition {spec!r}: needs {stages} positive counts (one per stage) "
                         f"that add up to the model's {blocks} layer blocks")
    return sizes


def partition(layers: Sequence[nn.Module], stages: int,
              spec: str | Sequence[int] | None = None) -> list[list[nn.Module]]:
    """``layers`` split into ``stages`` consecutive lists: explicit ``spec`` blocks per stage, or
    balanced by parameter count."""
    blocks = blocks_of(layers)
    if spec is not None:
        sizes = parse_explicit(spec, len(blocks), stages)
    else:
        sizes = balanced([param_count(b) for b in blocks], stages)
    out, i = [], 0
    for size in sizes:
        out.append([layer for block in blocks[i:i + size] for layer in block])
        i += size
    return out
