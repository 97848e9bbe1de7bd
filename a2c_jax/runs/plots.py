"""Learning-curve plots (matplotlib, Agg backend; imported only by host-side code).

Figures are `matplotlib.figure.Figure` objects, not pyplot's: no global figure registry to close,
nothing shared between threads, and pyplot's import (~0.2 s of every `a2c-jax train`) is skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

if "matplotlib.pyplot" not in sys.modules:  # a notebook's pyplot keeps its backend
    matplotlib.use("Agg")  # for pyplot figures made by others (Optuna's views): never a window
from matplotlib.figure import Figure


def _save(fig: Any, path: Path) -> None:
    """Write the figure atomically (temporary file, then rename) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.tight_layout()
    try:
        fig.savefig(tmp, dpi=100)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (7, 4), squeeze: bool = True) -> Any:
    """(Figure, axes) as `pyplot.subplots` returns them, for a figure pyplot does not track."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save_axes(ax: Any, path: Path) -> None:
    """Write the pyplot figure that holds `ax` (an Axes, or an array of them, e.g. from Optuna's views)
    atomically, then close it."""
    import matplotlib.pyplot as plt

    fig = np.asarray(ax).flat[0].figure
    try:
        _save(fig, path)
    finally:
        plt.close(fig)


def plot_learning_curve(
    records: Sequence[dict[str, Any]], path: Path, title: str, eval_return: float | None = None
) -> None:
    """Episode return (training, stochastic policy) against env steps, plus the final greedy eval."""
    steps = [r["env_steps"] for r in records if r.get("episode_return") is not None]
    returns = [r["episode_return"] for r in records if r.get("episode_return") is not None]
    fig, ax = _subplots(figsize=(7, 4))
    ax.plot(steps, returns, label="training episode return")
    if eval_return is not None and steps:
        ax.scatter([steps[-1]], [eval_return], color="C3", zorder=3, label="final greedy evaluation")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    _save(fig, path)


_PYGAME_RENDERED = ("Acrobot-v1", "CartPole-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0")


def render_gif(env_id: str, states: Sequence[Any], rewards: Sequence[float], path: Path) -> None:
    """Animate an episode with gymnax's visualiser; ConfigError where gymnax cannot draw `env_id`."""
    import importlib.util
    import os

    import numpy as np

    from a2c_jax.config import ConfigError
    from a2c_jax.envs import DEFAULT_NAMESPACE, make_env, split_env_id

    namespace, name = split_env_id(env_id)
    if namespace != DEFAULT_NAMESPACE:
        raise ConfigError(f"gif: only gymnax environments can be drawn, not env_id={env_id!r}")
    env_id = name
    env, env_params, _ = make_env(env_id)
    # gymnax draws the classic-control envs through gymnasium's pygame renderer, headless here
    for var, value in (("SDL_VIDEODRIVER", "dummy"), ("SDL_AUDIODRIVER", "dummy"), ("PYGAME_HIDE_SUPPORT_PROMPT", "1")):
        os.environ.setdefault(var, value)
    if importlib.util.find_spec("pygame") is None and env_id in _PYGAME_RENDERED:
        raise ConfigError(f"gif: rendering env_id={env_id!r} needs pygame: pip install 'a2c-jax[render]'")
    from gymnax.visualize import Visualizer

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.gif")
    try:
        Visualizer(env, env_params, list(states), np.cumsum(rewards)).animate(str(tmp))
    except OSError as err:  # a write fault (full disk, permissions), not the renderer's: name the file
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from None
    except Exception as err:  # gymnax raises assorted errors for envs it cannot draw
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"gif: gymnax cannot render env_id={env_id!r} ({type(err).__name__}: {err})") from None
    tmp.replace(path)


def _log_scale(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and max(positive) / min(positive) >= 10


def plot_sweep(ranked: Sequence[dict[str, Any]], names: Sequence[str], path: Path, title: str) -> None:
    """Two swept names: a heat map of the IQM return; otherwise IQM (95% CI) against each name."""
    import numpy as np

    multi = [n for n in names if len({str(r[n]) for r in ranked}) > 1]
    if len(multi) == 2 and len(ranked) == len({(str(r[multi[0]]), str(r[multi[1]])) for r in ranked}):
        xs = sorted({r[multi[0]] for r in ranked}, key=str if isinstance(ranked[0][multi[0]], tuple) else None)
        ys = sorted({r[multi[1]] for r in ranked}, key=str if isinstance(ranked[0][multi[1]], tuple) else None)
        grid = np.full((len(ys), len(xs)), np.nan)
        for r in ranked:
            grid[ys.index(r[multi[1]]), xs.index(r[multi[0]])] = r["iqm"]
        fig, ax = _subplots(figsize=(1.4 * len(xs) + 3, 1.0 * len(ys) + 2))
        im = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="w")
        ax.set_xticks(range(len(xs)), [f"{x:g}" if isinstance(x, float) else str(x) for x in xs])
        ax.set_yticks(range(len(ys)), [f"{y:g}" if isinstance(y, float) else str(y) for y in ys])
        ax.set_xlabel(multi[0])
        ax.set_ylabel(multi[1])
        fig.colorbar(im, ax=ax, label="IQM final greedy return")
        ax.set_title(title)
        _save(fig, path)
        return
    shown = multi or list(names)[:1]
    fig, axes = _subplots(1, max(1, len(shown)), figsize=(4.5 * max(1, len(shown)), 3.6), squeeze=False)
    for ax, name in zip(axes[0], shown, strict=False):
        numeric = all(isinstance(r[name], int | float) and not isinstance(r[name], bool) for r in ranked)
        xs = [r[name] if numeric else str(r[name]) for r in ranked]
        lo = [r["iqm"] - r["ci_low"] for r in ranked]
        hi = [r["ci_high"] - r["iqm"] for r in ranked]
        ax.errorbar(xs, [r["iqm"] for r in ranked], yerr=[lo, hi], fmt="o", capsize=3)
        if numeric and _log_scale(xs):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("IQM final greedy return (95% CI)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _save(fig, path)


def plot_pbt_schedule(steps: Any, schedule: dict[str, Any], fitness: Any, path: Path, title: str) -> None:
    """Each member's hyperparameters and fitness against env steps ([G, P] arrays)."""
    names = list(schedule)
    fig, axes = _subplots(1, len(names) + 1, figsize=(4.5 * (len(names) + 1), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        starts = [0, *list(steps)[:-1]]  # generation g trains with schedule[g] from its start
        ax.plot(starts, schedule[name], alpha=0.6, drawstyle="steps-post")
        if _log_scale(list(schedule[name].ravel())):
            ax.set_yscale("log")
        ax.set_xlabel("environment steps")
        ax.set_ylabel(name)
    fitness = np.asarray(fitness, np.float64)  # a diverged member's -inf would warn and stretch the axis
    axes[0][-1].plot(steps, np.where(np.isfinite(fitness), fitness, np.nan), alpha=0.6)
    axes[0][-1].set_xlabel("environment steps")
    axes[0][-1].set_ylabel("fitness (training return)")
    fig.suptitle(title)
    _save(fig, path)


_RLHF_PANELS = (
    ("reward-model score", ("eval_score",)),
    ("gold reward", ("eval_gold",)),
    ("KL to reference per sequence (k1 -, k3 --)", ("eval_k1", "eval_k3")),
    ("entropy per token", ("eval_entropy",)),
    ("value explained variance", ("explained_variance",)),
    ("mean length (-), EOS rate x 10 (--)", ("eval_length", "eval_eos")),
    ("fraction of distinct responses", ("eval_distinct",)),
    ("rank correlation: reward model vs gold", ("eval_rank_correlation",)),
)


def _by_beta(records: Sequence[dict[str, Any]]) -> dict[float, list[dict[str, Any]]]:
    groups: dict[float, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["beta"], []).append(record)
    return groups


def plot_rlhf(records: Sequence[dict[str, Any]], path: Path) -> None:
    """The RLHF run's eight panels against A2C updates, one colour per beta (metrics.jsonl lines)."""
    fig, axes = _subplots(2, 4, figsize=(16, 7))
    for color, (beta, rows) in enumerate(_by_beta(records).items()):
        for ax, (title, keys) in zip(axes.flat, _RLHF_PANELS, strict=True):
            for style, key in zip(("-", "--"), keys, strict=False):
                points = [(r["update"], r[key]) for r in rows if key in r]
                scale = 10.0 if key == "eval_eos" else 1.0
                label = f"beta {beta:g}" if style == "-" else None
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, [y * scale for y in ys], style, color=f"C{color}", label=label)
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("A2C updates")
    axes.flat[0].legend(fontsize=8)
    _save(fig, path)


def plot_rlhf_tradeoff(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Left: final gold reward against final KL, one point per beta. Right: reward-model score
    (dashed) and gold reward (solid) against updates per beta: where the proxy keeps rising while the
    gold reward falls, the policy is exploiting the reward model."""
    fig, (left, right) = _subplots(1, 2, figsize=(12, 4.5))
    for color, (beta, rows) in enumerate(_by_beta(records).items()):
        last = rows[-1]
        left.scatter([last["eval_k1"]], [last["eval_gold"]], color=f"C{color}", zorder=3)
        left.annotate(f"beta {beta:g}", (last["eval_k1"], last["eval_gold"]), fontsize=8)
        updates = [r["update"] for r in rows]
        right.plot(updates, [r["eval_gold"] for r in rows], "-", color=f"C{color}", label=f"gold, beta {beta:g}")
        right.plot(updates, [r["eval_score"] for r in rows], "--", color=f"C{color}", label=f"score, beta {beta:g}")
    left.set_xlabel("KL to reference per sequence (k1)")
    left.set_ylabel("gold reward")
    left.set_title("final gold reward vs KL")
    right.set_xlabel("A2C updates")
    right.set_title("reward-model score (--) and gold reward (-)")
    right.legend(fontsize=7, ncol=2)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    _save(fig, path)
