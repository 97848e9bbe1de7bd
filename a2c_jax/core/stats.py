"""Small statistics shared by the compiled programs (JAX arrays) and the host side (NumPy arrays)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def weighted_mean(values: Any, weights: Any, axis: int | None = None, empty: float = 0.0) -> Any:
    """sum(values * weights) / sum(weights) over `axis` (all axes when None), `empty` where the
    weights sum to zero. Works on NumPy and JAX arrays alike (each through its own array namespace):
    the mean return of the episodes that ended, weighting each update by its episode count.

    Shapes: values and weights [..., K] (broadcastable) -> [...] (axis=-1) or a scalar (axis=None).
    """
    xp = values.__array_namespace__()
    total = xp.sum(values * weights, axis=axis)
    count = xp.sum(weights, axis=axis)
    return xp.where(count > 0, total / xp.where(count > 0, count, 1), empty)


def iqm_rows(x: np.ndarray) -> np.ndarray:
    """Interquartile mean of each row: [R, S] -> [R], the mean of the middle 50% (trimming 25% each
    side, as rliable does)."""
    x = np.sort(np.asarray(x, np.float64), axis=-1)
    n = x.shape[-1]
    cut = int(np.floor(0.25 * n))
    return x[..., cut : n - cut].mean(axis=-1) if n - 2 * cut > 0 else x.mean(axis=-1)


def iqm(x: np.ndarray) -> float:
    """Interquartile mean of the entries of x [S] (seeds)."""
    return float(iqm_rows(np.asarray(x)[None])[0])


def bootstrap_ci(
    x: np.ndarray, n: int = 2000, seed: int = 0, statistic: Callable[[np.ndarray], np.ndarray] = iqm_rows
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of a statistic (by default the IQM) over the entries of x [S]
    (seeds): n resamples of S seeds with replacement, drawn at once and reduced row by row by
    `statistic` ([n, S] -> [n])."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    stats = statistic(x[rng.integers(0, len(x), (n, len(x)))])
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))
