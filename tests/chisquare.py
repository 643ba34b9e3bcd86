"""Pearson's chi-square goodness-of-fit test without scipy (for sampling-frequency tests)."""
import math

import numpy as np


def chi2_critical(dof: int, z: float = 3.29) -> float:
    """Upper critical value of chi-square with ``dof`` degrees of freedom (Wilson-Hilferty).

    z = 3.29 is the one-sided normal quantile for p = 0.0005: a correct sampler fails 1 in 2000.
    """
    c = 2.0 / (9.0 * dof)
    return dof * (1.0 - c + z * math.sqrt(c)) ** 3


def chi2_statistic(counts, probs) -> float:
    """Pearson's statistic of observed ``counts`` against expected probabilities ``probs``."""
    counts = np.asarray(counts, dtype=np.float64)
    expected = counts.sum() * np.asarray(probs, dtype=np.float64)
    return float(((counts - expected) ** 2 / expected).sum())


def assert_frequencies(counts, probs) -> None:
    """Fail if ``counts`` are implausible as a multinomial sample from ``probs``."""
    stat, crit = chi2_statistic(counts, probs), chi2_critical(len(probs) - 1)
    assert stat < crit, f"chi-square {stat:.1f} >= critical {crit:.1f} ({len(probs) - 1} dof)"
