"""One results table for every kind of population: grid and random sweeps, Optuna studies and PBT.

A row describes one candidate (a setting of a sweep, a trial of a study, a member of PBT) by its
statistics over seeds (`seed_statistics`), among them its `score`: the statistic the search maximises
(the objective: the IQM by default, the mean, or a quantile such as the worst decile of seeds, so a
search can prefer settings that learn on every seed). `rank` orders the rows (best score first, every
candidate with a diverged seed after every clean one, ties by the row's own key) and numbers them;
`best` is the first clean row. The sweeps' ranking.csv, the study's ranking.csv, the printed tables and
best.json all come from these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from a2c_jax.config import invalid
from a2c_jax.core.stats import bootstrap_ci, iqm, iqm_rows

OBJECTIVE_HELP = "iqm, mean or quantile:Q with 0 < Q < 1 (e.g. quantile:0.1, the worst decile of seeds)"


def check_objective(text: str) -> str:
    """`text` when it names an objective (`iqm`, `mean`, `quantile:Q` with 0 < Q < 1); else ConfigError."""
    if text in ("iqm", "mean"):
        return text
    if isinstance(text, str) and text.startswith("quantile:"):
        try:
            q = float(text.removeprefix("quantile:"))
        except ValueError:
            q = float("nan")
        if 0.0 < q < 1.0:
            return text
    raise invalid("objective", text, OBJECTIVE_HELP)


def objective_rows(objective: str) -> Callable[[np.ndarray], np.ndarray]:
    """The objective's statistic of each row: [R, S] (seeds) -> [R]. A quantile interpolates linearly
    between order statistics (NumPy's default), so quantile:0.5 is the median."""
    check_objective(objective)
    if objective == "iqm":
        return iqm_rows
    if objective == "mean":
        return lambda x: np.asarray(x, np.float64).mean(axis=-1)
    q = float(objective.removeprefix("quantile:"))
    return lambda x: np.quantile(np.asarray(x, np.float64), q, axis=-1)


def seed_statistics(returns: np.ndarray, diverged: np.ndarray, objective: str = "iqm") -> dict[str, Any]:
    """The statistics of one candidate over its seeds: returns [S] (greedy final returns), diverged [S]
    -> {score (the objective's statistic), ci_low, ci_high (95% bootstrap interval of the score), iqm,
    mean, seeds, diverged (count)}. With the default objective the score is the IQM."""
    returns = np.asarray(returns, np.float64)
    statistic = objective_rows(objective)
    low, high = bootstrap_ci(returns, statistic=statistic)
    return {"score": float(statistic(returns[None])[0]), "ci_low": low, "ci_high": high, "iqm": iqm(returns),
            "mean": float(returns.mean()), "seeds": int(returns.size), "diverged": int(np.sum(diverged))}  # fmt: skip


def rank(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The rows best first, each with its 1-based `rank`: clean candidates by score (descending), then
    those with a diverged seed; ties keep the order of `key` (the setting or trial number)."""
    ordered = sorted(rows, key=lambda r: (r["diverged"] > 0, -r["score"], r[key]))
    return [{"rank": i, **row} for i, row in enumerate(ordered, start=1)]


def best(ranked: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best row none of whose seeds diverged (None when every candidate diverged)."""
    return next((row for row in ranked if row["diverged"] == 0), None)
