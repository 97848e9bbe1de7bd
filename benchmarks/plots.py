"""Plots of benchmark results (matplotlib, Agg)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _sb3_curve(runs: list[dict[str, Any]], index: int, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Mean episode return of SB3 runs in equal bins of log column `index` (0: env steps, 1: seconds)."""
    logs = [np.asarray(r["log"]) for r in runs if r["log"]]
    if not logs:
        return np.zeros(0), np.zeros(0)
    top = max(log[:, index].max() for log in logs)
    edges = np.linspace(0, top, bins + 1)
    means = []
    for lo, hi in itertools.pairwise(edges):
        vals = np.concatenate([log[(log[:, index] > lo) & (log[:, index] <= hi), 2] for log in logs])
        means.append(vals.mean() if len(vals) else np.nan)
    return edges[1:], np.asarray(means)


def plot_learning_quality(results: dict[str, Any], path: Path) -> None:
    """Per env: training return against env steps and against wall-clock, a2c_jax and SB3."""
    envs = list(results)
    fig, axes = plt.subplots(len(envs), 2, figsize=(11, 3.3 * len(envs)), squeeze=False)
    for row, env in zip(axes, envs, strict=True):
        entry = results[env]
        for key in [k for k in entry if k.startswith("a2c_jax") and not k.endswith("summary")]:
            run = entry[key]
            steps = np.asarray(run["steps"])
            label = f"a2c_jax ({run['preset']}, {len(run['final'])} seeds, one program)"
            row[0].plot(steps, run["curve"], label=label)
            row[1].plot(steps / steps[-1] * run["wall_seconds"], run["curve"], label=label)
        for index, ax in enumerate(row):
            x, y = _sb3_curve(entry["sb3"], index)
            ax.plot(x, y, label=f"SB3 A2C ({len(entry['sb3'])} seeds, one at a time)")
            ax.set_xlabel("environment steps" if index == 0 else "wall-clock seconds (training)")
            ax.set_ylabel("training episode return")
            ax.set_title(env)
            ax.grid(alpha=0.3)
        row[1].set_xscale("log")
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_tuning(result: dict[str, Any], path: Path) -> None:
    """Left: best search IQM after each round (TPE and random, every repeat) against env steps spent.
    Right: each method's best setting re-trained on fresh seeds (IQM per repeat) against the zoo preset."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    steps_per_round = result["batch"] * result["seeds_per_trial"] * result["env_steps_per_member"]
    for method, color in (("tpe", "C0"), ("random", "C1")):
        for i, run in enumerate(result["methods"].get(method, {}).get("runs", [])):
            curve = run["best_so_far_per_round"]
            x = np.arange(1, len(curve) + 1) * steps_per_round
            left.plot(x, curve, marker="o", color=color, alpha=0.8, label=method if i == 0 else None)
    left.set_xlabel("env steps spent by the search")
    left.set_ylabel("best search IQM so far (3 seeds)")
    left.legend()
    left.grid(alpha=0.3)
    names = list(result["methods"])
    for j, method in enumerate(names):
        values = result["methods"][method]["fresh_iqm_over_repeats"]["values"]
        right.scatter([j] * len(values), values, color=f"C{j}")
    zoo = result["zoo_preset_fresh_seeds"]
    right.axhspan(zoo["ci_low"], zoo["ci_high"], color="grey", alpha=0.2, label="zoo preset, 95% CI")
    right.axhline(zoo["iqm"], color="grey")
    right.set_xticks(range(len(names)), names)
    right.set_ylabel("best setting, IQM on 10 fresh seeds")
    right.legend()
    right.grid(alpha=0.3)
    fig.suptitle(f"Hyperparameter search on {result['env_id']}, {result['env_steps_per_member']:,} steps per member")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
