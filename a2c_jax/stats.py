"""Small statistics shared by the compiled programs (JAX arrays) and the host side (NumPy arrays)."""

from __future__ import annotations

from typing import Any


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
