"""One results table for every kind of population: grid and random sweeps, Optuna studies and PBT.

A row describes one candidate (a setting of a sweep, a trial of a study, a member of PBT) by its
statistics over seeds (`seed_statistics`); `rank` orders the rows (best IQM first, every candidate
with a diverged seed after every clean one, ties by the row's own key) and numbers them; `best` is the
first clean row. The sweeps' ranking.csv, the study's ranking.csv, the printed tables and best.json all
come from these three functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from a2c_jax.core.stats import bootstrap_ci, iqm


def seed_statistics(returns: np.ndarray, diverged: np.ndarray) -> dict[str, Any]:
    """The statistics of one candidate over its seeds: returns [S] (greedy final returns), diverged [S]
    -> {iqm, ci_low, ci_high (95% bootstrap interval of the IQM), mean, seeds, diverged (count)}."""
    returns = np.asarray(returns, np.float64)
    low, high = bootstrap_ci(returns)
    return {"iqm": iqm(returns), "ci_low": low, "ci_high": high, "mean": float(returns.mean()),
            "seeds": int(returns.size), "diverged": int(np.sum(diverged))}  # fmt: skip


def rank(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The rows best first, each with its 1-based `rank`: clean candidates by IQM (descending), then those
    with a diverged seed; ties keep the order of `key` (the setting or trial number)."""
    ordered = sorted(rows, key=lambda r: (r["diverged"] > 0, -r["iqm"], r[key]))
    return [{"rank": i, **row} for i, row in enumerate(ordered, start=1)]


def best(ranked: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best row none of whose seeds diverged (None when every candidate diverged)."""
    return next((row for row in ranked if row["diverged"] == 0), None)
