"""Auto-reset wrappers that bring `done`-only environments onto the protocol (terminated, truncated,
final observation): `AutoReset`, and `OptimisticAutoReset` for envs whose reset is costly."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from a2c_jax.config import check_int


@dataclasses.dataclass(frozen=True)
class AutoReset:
    """The protocol for an env whose `step(key, state, action, params)` returns `(obs, state, reward,
    done, info)` and does not reset (Craftax's NoAutoReset envs, gymnax's `step_env`): on `done` the
    step returns a fresh episode's obs and state, the reached observation as
    `info["final_observation"]`, and splits `done` into terminated and truncated by `time_limit(state,
    params)`, which says whether the reached state is at the episode's time limit."""

    env: Any
    time_limit: Callable[[Any, Any], jax.Array]

    def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        return self.env.reset(key, params)

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: Any) -> tuple[Any, ...]:
        step_key, reset_key = jax.random.split(key)
        obs, reached, reward, done, truncated, info = step_without_reset(
            self.env, self.time_limit, step_key, state, action, params
        )
        fresh_obs, fresh = self.env.reset(reset_key, params)
        next_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, reached)
        return jnp.where(done, fresh_obs, obs), next_state, reward, done & ~truncated, truncated, info


def step_without_reset(
    env: Any, time_limit: Callable[[Any, Any], jax.Array], key: jax.Array, state: Any, action: jax.Array, params: Any
) -> tuple[Any, ...]:
    """One step of a `done`-only env (one environment): (obs, reached state, reward, done, truncated,
    info with the reached `final_observation`); truncated is `done` at the time limit."""
    obs, reached, reward, done, info = env.step(key, state, action, params)
    done = jnp.asarray(done, bool)
    truncated = done & jnp.asarray(time_limit(reached, params), bool)
    return obs, reached, reward, done, truncated, {**info, "final_observation": obs}


@dataclasses.dataclass(frozen=True)
class OptimisticAutoReset:
    """`AutoReset` for envs whose reset is costly (Craftax generates a whole world), stepping all N envs
    at once (`batched`: VecEnv hands it keys, states and actions with a leading N axis instead of
    vmapping it). Each step computes max(1, N // reset_ratio) fresh episodes instead of N and gives
    the k-th env that finished the step fresh episode k mod that count; envs that finish in the same
    step beyond the count start from copies of the same fresh episode (the trade of Craftax's own
    OptimisticResetVecEnvWrapper, whose ratio 16 is the default here). Terminated, truncated and
    `info["final_observation"]` are as `AutoReset` gives them."""

    env: Any
    time_limit: Callable[[Any, Any], jax.Array]
    reset_ratio: int = 16
    batched: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_int("reset_ratio", self.reset_ratio)

    def reset(self, keys: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        """keys [N, 2] -> (obs [N, ...], states with a leading N axis)."""
        return jax.vmap(self.env.reset, in_axes=(0, None))(keys, params)

    def step(self, keys: jax.Array, states: Any, actions: jax.Array, params: Any) -> tuple[Any, ...]:
        """keys [N, 2], states [N, ...], actions [N, ...] -> the protocol's step outputs, each [N, ...]."""
        num_envs = keys.shape[0]
        split = jax.vmap(jax.random.split)(keys)
        step = functools.partial(step_without_reset, self.env, self.time_limit)
        obs, reached, reward, done, truncated, info = jax.vmap(step, in_axes=(0, 0, 0, None))(
            split[:, 0], states, actions, params
        )
        pool = max(1, num_envs // self.reset_ratio)
        fresh_obs, fresh = self.reset(split[:pool, 1], params)
        slot = (jnp.cumsum(done) - 1) % pool  # the k-th finished env takes fresh episode k mod pool

        def pick(fresh_leaf: jax.Array, reached_leaf: jax.Array) -> jax.Array:
            mask = done.reshape(done.shape + (1,) * (reached_leaf.ndim - 1))
            return jnp.where(mask, fresh_leaf[slot], reached_leaf)

        next_state = jax.tree.map(pick, fresh, reached)
        return pick(fresh_obs, obs), next_state, reward, done & ~truncated, truncated, info
