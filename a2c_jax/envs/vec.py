"""`VecEnv`: N copies of an environment stepped as one pure function, with observation and reward
normalisation, action clipping or rescaling, and episode statistics."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from a2c_jax.envs.normalize import CLIP_OBS, CLIP_REWARD, NORM_EPS, RunningMeanStd, rms_init, rms_normalize, rms_update
from a2c_jax.envs.spaces import EnvSpec, env_action, preprocess_obs

GROUP = "group"
PER_ENV = "per_env"
"""A leaf with the env axis N first (one row per environment)."""
SHARED = "shared"
"""A statistic of all N envs together (observation and return normalisation)."""


@struct.dataclass
class VecEnvState:
    """State of N environments plus wrapper statistics, in two groups declared on each field (`GROUP`):
    PER_ENV leaves lead with the env axis N (sharded over the "env" devices; each population member keeps
    its own under PBT's exploit), SHARED statistics describe all N envs at once (replicated; copied with
    the weights under exploit). Code that treats the groups differently calls `map_groups`, never a field
    by name, so a new field cannot go unsharded: it must declare its group.

    Attributes:
        inner: batched gymnax state (leading axis N).
        obs_rms: running observation statistics (shape obs_shape), shared by all N envs.
        ret_rms: running statistics of the discounted return (scalar), for reward scaling.
        discounted_return: [N] running discounted return used by reward normalisation.
        episode_return: [N] raw return of the episode in progress.
        episode_length: [N] length of the episode in progress.
    """

    inner: Any = struct.field(metadata={GROUP: PER_ENV})
    obs_rms: RunningMeanStd = struct.field(metadata={GROUP: SHARED})
    ret_rms: RunningMeanStd = struct.field(metadata={GROUP: SHARED})
    discounted_return: jax.Array = struct.field(metadata={GROUP: PER_ENV})
    episode_return: jax.Array = struct.field(metadata={GROUP: PER_ENV})
    episode_length: jax.Array = struct.field(metadata={GROUP: PER_ENV})

    def map_groups(self, per_env: Callable[[Any], Any], shared: Callable[[Any], Any]) -> VecEnvState:
        """A VecEnvState of the same structure whose PER_ENV fields are `per_env(field)` and SHARED ones
        `shared(field)` (each applied to the field's whole subtree)."""
        groups = field_groups(type(self))
        changes = {
            name: (per_env if group == PER_ENV else shared)(getattr(self, name)) for name, group in groups.items()
        }
        return dataclasses.replace(self, **changes)


def field_groups(cls: type) -> dict[str, str]:
    """{field: PER_ENV or SHARED} of a state dataclass; ValueError naming a field that declares neither."""
    groups = {f.name: f.metadata.get(GROUP) for f in dataclasses.fields(cls)}
    missing = [name for name, group in groups.items() if group not in (PER_ENV, SHARED)]
    if missing:
        raise ValueError(f"{cls.__name__} fields {missing} declare no group (metadata {{GROUP: PER_ENV or SHARED}})")
    return groups  # type: ignore[return-value]


class StepInfo(NamedTuple):
    """Per-step extras, each [N] except final_obs [N, *obs_shape].

    `final_obs` is the (normalised) observation reached by the step before any auto-reset, so
    V(final_obs) is the bootstrap target of every step that was not terminated.
    `episode_return` / `episode_length` hold the raw totals where an episode ended, else 0.
    """

    final_obs: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class VecEnv:
    """N vmapped copies of an environment (as `make_env` returns it: `VecEnv(*make_env(id), n)`) with
    the wrappers selected by the flags. Holds the env itself, built once on the host; compiled code
    closes over it. Compared and hashed by identity: two VecEnvs are the same only if they are one."""

    env: Any
    env_params: Any
    spec: EnvSpec
    num_envs: int
    normalize_observation: bool = False
    normalize_reward: bool = False
    squash_actions: bool = False
    frozen_stats: bool = False
    """evaluation: observations are normalised by statistics given to `reset`, never updated"""

    def for_evaluation(self, num_envs: int) -> VecEnv:
        """The same envs and wrappers for evaluation episodes: `num_envs` of them, raw rewards, and the
        observation statistics passed to `reset` frozen."""
        return dataclasses.replace(self, num_envs=num_envs, normalize_reward=False, frozen_stats=True)

    def env_action(self, action: jax.Array) -> jax.Array:
        """The policy's action [N] or [N, D] as the env receives it (clipped, or rescaled if squashed)."""
        return env_action(self.spec, action, self.squash_actions)

    def normalize(self, obs_rms: RunningMeanStd, obs: jax.Array) -> jax.Array:
        """Apply observation normalisation with frozen statistics (identity when disabled)."""
        return rms_normalize(obs_rms, obs, CLIP_OBS) if self.normalize_observation else obs

    def reset(self, key: jax.Array, obs_rms: RunningMeanStd | None = None) -> tuple[jax.Array, VecEnvState]:
        """Reset all envs. Returns (obs [N, *obs_shape], state). Observation statistics start fresh, or
        are `obs_rms` (required when `frozen_stats`)."""
        env, params = self.env, self.env_params
        reset = env.reset if getattr(env, "batched", False) else jax.vmap(env.reset, in_axes=(0, None))
        raw_obs, inner = reset(jax.random.split(key, self.num_envs), params)
        obs = preprocess_obs(self.spec, raw_obs)
        if obs_rms is None:
            if self.frozen_stats:
                raise ValueError("a VecEnv with frozen statistics needs the obs_rms to reset with")
            obs_rms = rms_init(self.spec.obs_shape)
        if self.normalize_observation and not self.frozen_stats:
            obs_rms = rms_update(obs_rms, obs)
        zeros = jnp.zeros((self.num_envs,), jnp.float32)
        state = VecEnvState(
            inner=inner,
            obs_rms=obs_rms,
            ret_rms=rms_init(()),
            discounted_return=zeros,
            episode_return=zeros,
            episode_length=jnp.zeros((self.num_envs,), jnp.int32),
        )
        return self.normalize(obs_rms, obs), state

    def step(
        self, key: jax.Array, state: VecEnvState, action: jax.Array, gamma: jax.Array
    ) -> tuple[jax.Array, VecEnvState, jax.Array, jax.Array, jax.Array, StepInfo]:
        """Step all envs with `action` [N] or [N, D] (`env_action`: clipped or rescaled to the bounds).

        Returns (obs [N, ...], state, reward [N] (normalised if enabled), terminated [N] bool,
        truncated [N] bool, StepInfo). `gamma` is the discount of the reward normaliser.
        """
        env, params = self.env, self.env_params
        step = env.step if getattr(env, "batched", False) else jax.vmap(env.step, in_axes=(0, 0, 0, None))
        raw_obs, inner, reward, terminated, truncated, info = step(
            jax.random.split(key, self.num_envs), state.inner, self.env_action(action), params
        )
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.logical_and(jnp.asarray(truncated, bool), jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        obs = preprocess_obs(self.spec, raw_obs)
        final_obs = preprocess_obs(self.spec, info["final_observation"])

        obs_rms = state.obs_rms
        if self.normalize_observation and not self.frozen_stats:
            obs_rms = rms_update(obs_rms, obs)
        ret_rms, disc = state.ret_rms, state.discounted_return
        scaled_reward = reward
        if self.normalize_reward:
            disc = disc * gamma + reward
            ret_rms = rms_update(ret_rms, disc)
            scaled_reward = jnp.clip(reward / jnp.sqrt(ret_rms.var + NORM_EPS), -CLIP_REWARD, CLIP_REWARD)
            disc = jnp.where(done, 0.0, disc)

        ep_return = state.episode_return + reward
        ep_length = state.episode_length + 1
        info_out = StepInfo(
            final_obs=self.normalize(obs_rms, final_obs),
            episode_return=jnp.where(done, ep_return, 0.0),
            episode_length=jnp.where(done, ep_length, 0),
        )
        new_state = VecEnvState(
            inner=inner,
            obs_rms=obs_rms,
            ret_rms=ret_rms,
            discounted_return=disc,
            episode_return=jnp.where(done, 0.0, ep_return),
            episode_length=jnp.where(done, 0, ep_length),
        )
        return self.normalize(obs_rms, obs), new_state, scaled_reward, terminated, truncated, info_out
