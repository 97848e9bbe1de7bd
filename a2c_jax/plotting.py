"""Learning-curve plots (matplotlib, Agg backend; imported only by host-side code)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_learning_curve(
    records: Sequence[dict[str, Any]], path: Path, title: str, eval_return: float | None = None
) -> None:
    """Episode return (training, stochastic policy) against env steps, plus the final greedy eval."""
    steps = [r["env_steps"] for r in records if r.get("episode_return") is not None]
    returns = [r["episode_return"] for r in records if r.get("episode_return") is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, returns, label="training episode return")
    if eval_return is not None and steps:
        ax.scatter([steps[-1]], [eval_return], color="C3", zorder=3, label="final greedy evaluation")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


_PYGAME_RENDERED = ("Acrobot-v1", "CartPole-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0")


def render_gif(env_id: str, states: Sequence[Any], rewards: Sequence[float], path: Path) -> None:
    """Animate an episode with gymnax's visualiser; ConfigError where gymnax cannot draw `env_id`."""
    import importlib.util
    import os

    import numpy as np

    from a2c_jax.config import ConfigError
    from a2c_jax.envs import make_env

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
    except Exception as err:  # gymnax raises assorted errors for envs it cannot draw
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"gif: gymnax cannot render env_id={env_id!r} ({type(err).__name__}: {err})") from None
    tmp.replace(path)
