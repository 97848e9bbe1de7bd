"""What the policy needs to know about an environment (`EnvSpec`), built from gymnax-style spaces;
the observation preprocessing and action mapping between policy and env."""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What the policy needs to know about an environment.

    Attributes:
        env_id: the id it was made from (with its namespace, if any).
        obs_shape: shape of one preprocessed observation (float32).
        action_kind: "discrete" (Categorical policy) or "continuous" (diagonal Gaussian).
        action_dim: number of actions (discrete) or action dimensions (continuous).
        action_low / action_high: Box bounds per dimension (continuous only).
        obs_onehot: number of categories when observations are one-hot encoded, else 0.
        max_episode_steps: the env's time limit.
    """

    env_id: str
    obs_shape: tuple[int, ...]
    action_kind: Literal["discrete", "continuous"]
    action_dim: int
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    obs_onehot: int = 0
    max_episode_steps: int = 1000


def preprocess_obs(spec: EnvSpec, obs: jax.Array) -> jax.Array:
    """Raw gymnax observations [N, ...] -> float32 [N, *spec.obs_shape] (one-hot if discrete)."""
    if spec.obs_onehot:
        return jax.nn.one_hot(obs, spec.obs_onehot, dtype=jnp.float32)
    return jnp.asarray(obs, jnp.float32)


def env_action(spec: EnvSpec, action: jax.Array, squashed: bool = False) -> jax.Array:
    """The action [N] or [N, D] the env receives: discrete actions pass through; continuous ones are
    clipped to the Box bounds, or, when the policy squashes them into [-1, 1] (`squash_output`),
    rescaled linearly onto [low, high] (SB3's `unscale_action`)."""
    if spec.action_kind == "discrete":
        return action
    low, high = jnp.asarray(spec.action_low), jnp.asarray(spec.action_high)
    if squashed:
        return low + 0.5 * (action + 1.0) * (high - low)
    return jnp.clip(action, low, high)
