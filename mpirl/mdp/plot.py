"""A picture of V and the greedy policy of a grid world (PNG, matplotlib's Agg backend)."""
from __future__ import annotations

import numpy as np

from mpirl.mdp.mdp import GridLayout

MAX_ARROWS = 48 * 48  # beyond this the arrows are a grey blur; the heat map alone is clearer
NO_ARROW = {"H", "G", "W", "C"}  # holes, goals, walls, cliffs: nothing to choose there


def plot_grid(path: str, layout: GridLayout, V: np.ndarray, policy: np.ndarray,
              title: str) -> None:
    """Heat map of V (n_states,) on the grid, an arrow per cell for ``policy`` (n_states,)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrow, ncol = layout.nrow, layout.ncol
    values = V.reshape(nrow, ncol)
    side = min(12.0, max(4.0, 0.5 * ncol))
    fig, ax = plt.subplots(figsize=(side + 1.5, side * nrow / ncol + 0.8))
    image = ax.imshow(values, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="V(s)")
    labels = layout.labels
    if labels is not None:
        walls = np.isin(labels, ["H", "W", "C"])
        ax.imshow(np.ma.masked_where(~walls, np.ones_like(values)), cmap="Greys", vmin=0, vmax=1.4,
                  interpolation="nearest")
    if nrow * ncol <= MAX_ARROWS:
        # (drow, dcol) per cell; with angles="xy" the y axis of imshow (downwards) is respected
        moves = np.asarray(layout.moves, dtype=float)[policy.reshape(nrow, ncol)]  # (nrow, ncol, 2)
        show = np.ones((nrow, ncol), bool) if labels is None else ~np.isin(labels, list(NO_ARROW))
        rows, cols = np.nonzero(show)
        ax.quiver(cols, rows, moves[rows, cols, 1], moves[rows, cols, 0], color="white",
                  angles="xy", scale_units="xy", scale=2.2, width=0.004 + 0.1 / max(nrow, ncol) ** 2)
        if labels is not None and nrow * ncol <= 400:
            for r, c in zip(*np.nonzero(np.isin(labels, ["S", "G", "H"]))):
                ax.text(c - 0.4, r - 0.25, labels[r, c], color="red", fontsize=9, weight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
