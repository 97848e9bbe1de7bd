"""The presets: starting values per environment (`default`, `sb3` = SB3's A2C defaults, `zoo` =
RL-Baselines3-Zoo's tuned A2C), read by `a2c_jax.config.preset`. Like config.py it imports neither JAX
nor NumPy."""

from __future__ import annotations

import typing
from typing import Any

from a2c_jax.config import A2CConfig, ConfigError, HParams, PresetName, check_choice

# --- presets ---------------------------------------------------------------------------------

# The generic default (gymnax ids without an entry of their own, other namespaces): SB3's A2C
# hyperparameters with a linearly decaying learning rate and 300k steps (the decay settles the policy).
_GENERIC: tuple[dict[str, Any], dict[str, Any]] = (dict(total_timesteps=300_000, lr_schedule="linear"), {})
# CartPole-v1: the same with lr 1e-3 and GAE lambda 0.8, chosen for robustness over seeds with
# `a2c-jax sweep --seeds 64 --objective quantile:0.05` (64 of 64 seeds solve; the generic values solve 60:
# benchmarks/results/cpu-solve-rates.json, cpu-solve-rates-cartpole-search.json).
# Pendulum-v1 instead gets a wider batch (16 x 16) and Adam (returns: benchmarks/results/cpu-returns-table.json).
_DEFAULT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "CartPole-v1": (_GENERIC[0], dict(lr=1e-3, gae_lambda=0.8)),
    "Pendulum-v1": (
        dict(
            num_envs=16,
            num_steps=16,
            total_timesteps=2_000_000,
            optimizer="adam",
            normalize_observation=True,
            normalize_reward=True,
        ),
        dict(lr=1e-3, gamma=0.95, gae_lambda=0.95, vf_coef=0.4),
    ),
}

# MinAtar (10x10xC images): the MinAtar paper's network (conv 16 3x3 -> dense 128, ReLU) shared by
# actor and critic, 64 envs x 5 steps, Adam 1e-3 decaying linearly, a strong entropy bonus (0.05; with
# 0.01 Breakout's policy settled lower), 5M steps (returns: benchmarks/results/gpu-returns-minatar.json).
_MINATAR = (
    dict(
        num_envs=64,
        num_steps=5,
        total_timesteps=5_000_000,
        network="cnn",
        hidden_sizes=(128,),
        activation="relu",
        shared_torso=True,
        optimizer="adam",
        lr_schedule="linear",
    ),
    dict(lr=1e-3, ent_coef=0.05),
)
MINATAR_GAMES: tuple[str, ...] = tuple(
    f"{game}-MinAtar" for game in ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
)
_DEFAULT.update(dict.fromkeys(MINATAR_GAMES, _MINATAR))

# Env families outside gymnax: one default per namespace (an exact id in _DEFAULT still wins).
# Brax: continuous control with 1,000-step episodes: 32 envs x 16 steps, Adam 3e-3 decaying linearly,
# GAE 0.95, normalised observations and rewards (the learning rate chosen on inverted_pendulum@spring:
# benchmarks/results/cpu-brax-preset-lr.json), 1M steps.
# Craftax: symbolic observations of ~1,300 floats and sparse achievements: the Craftax paper's PPO
# network width (512, 3 layers, tanh), 64 envs x 16 steps, Adam 3e-4 decaying linearly, GAE 0.8 (the
# paper's), entropy 0.01, 1M steps.
_FAMILY_DEFAULT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "brax": (
        dict(
            num_envs=32,
            num_steps=16,
            total_timesteps=1_000_000,
            optimizer="adam",
            lr_schedule="linear",
            normalize_observation=True,
            normalize_reward=True,
        ),
        dict(lr=3e-3, gae_lambda=0.95),
    ),
    "craftax": (
        dict(
            num_envs=64,
            num_steps=16,
            total_timesteps=1_000_000,
            hidden_sizes=(512, 512, 512),
            optimizer="adam",
            lr_schedule="linear",
        ),
        dict(lr=3e-4, gae_lambda=0.8, ent_coef=0.01),
    ),
}

# RL Baselines3 Zoo's tuned A2C hyperparameters (hyperparams/a2c.yml). "normalize: true" in the zoo
# wraps VecNormalize, which normalises both observations and rewards.
_ZOO: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "CartPole-v1": (dict(num_envs=8, total_timesteps=500_000), {}),
    "Acrobot-v1": (
        dict(num_envs=16, total_timesteps=500_000, normalize_observation=True, normalize_reward=True),
        {},
    ),
    "MountainCar-v0": (
        dict(num_envs=16, total_timesteps=1_000_000, normalize_observation=True, normalize_reward=True),
        {},
    ),
    "Pendulum-v1": (
        dict(
            num_envs=8,
            num_steps=8,
            total_timesteps=1_000_000,
            lr_schedule="linear",
            normalize_observation=True,
            normalize_reward=True,
            log_std_init=-2.0,
            ortho_init=False,
            use_sde=True,
        ),
        dict(gamma=0.9, gae_lambda=0.9, vf_coef=0.4),
    ),
    "MountainCarContinuous-v0": (
        dict(
            num_envs=4,
            num_steps=100,
            total_timesteps=100_000,
            normalize_observation=True,
            normalize_reward=True,
            ortho_init=False,
            use_sde=True,
            sde_sample_freq=16,
        ),
        {},
    ),
}

PRESETS: tuple[str, ...] = typing.get_args(PresetName)


def preset(name: str, env_id: str = "CartPole-v1") -> tuple[A2CConfig, HParams]:
    """Named starting point for `env_id`.

    - "sb3": Stable-Baselines3 A2C defaults (lr 7e-4, n_steps 5, RMSprop, gae_lambda 1, separate
      [64, 64] tanh MLPs) with 8 environments and 500k steps.
    - "zoo": RL-Zoo's tuned A2C values for `env_id` (CartPole, Acrobot, MountainCar, Pendulum,
      MountainCarContinuous).
    - "default": the fast preset: SB3's values with a linear learning-rate decay and 300k steps
      (CartPole-v1 with lr 1e-3 and GAE lambda 0.8, chosen for its solve rate over 64 seeds);
      Pendulum-v1 gets its own (16 x 16 batch, Adam, 2M steps), and the MinAtar games a shared CNN
      (64 x 5 batch, Adam, entropy 0.05, 5M steps); `brax:` and `craftax:` ids their family's default
      (see `_FAMILY_DEFAULT`).
    """
    check_choice("preset", name, PRESETS)
    config: dict[str, Any] = {"env_id": env_id}
    env_id = env_id.removeprefix("gymnax:")  # the default namespace: the presets know gymnax's ids
    hparams: dict[str, Any] = {}
    if name == "default":
        family = env_id.partition(":")[0] if ":" in env_id else ""
        values = _DEFAULT.get(env_id) or _FAMILY_DEFAULT.get(family) or _GENERIC
        config.update(values[0])
        hparams.update(values[1])
    elif name == "zoo":
        if env_id not in _ZOO:
            raise ConfigError(
                f"preset='zoo' has no tuned values for env_id={env_id!r}: "
                f"available for {', '.join(_ZOO)}; use preset 'sb3' or 'default' instead"
            )
        config.update(_ZOO[env_id][0])
        hparams.update(_ZOO[env_id][1])
    return A2CConfig(**config), HParams(**hparams)
