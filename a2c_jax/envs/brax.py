"""Brax (`brax:inverted_pendulum`, `brax:hopper`, `brax:ant@spring`, ...): MuJoCo-style continuous control
written in JAX, the envs PureJaxRL and rejax train on accelerators.

`brax:NAME` builds Brax's own environment NAME with Brax's default physics backend; `brax:NAME@BACKEND`
picks another (generalized, positional, spring, mjx; spring and positional are several times faster on
a CPU, generalized is closest to MuJoCo). Episodes follow Brax's training `EpisodeWrapper` (1,000 steps,
no action repeat): it sets `done` at the limit and `info["truncation"]` = 1 only when the limit, not the
env's own termination (a pendulum that fell, an unhealthy hopper), ended the episode. The adapter maps
that onto the protocol through `envs.AutoReset`: `truncation` -> truncated (bootstrap from
V(final observation)), any other `done` -> terminated. Actions are Brax's [-1, 1] per actuator.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from a2c_jax.config import ConfigError
from a2c_jax.envs.spaces import EnvSpec
from a2c_jax.envs.wrappers import AutoReset

NAMES = (
    "ant",
    "halfcheetah",
    "hopper",
    "humanoid",
    "humanoidstandup",
    "inverted_double_pendulum",
    "inverted_pendulum",
    "pusher",
    "reacher",
    "swimmer",
    "walker2d",
)
"""Brax's registered training environments."""
BACKENDS = ("generalized", "positional", "spring", "mjx")
EPISODE_LENGTH = 1000
"""Steps before the time limit truncates an episode (Brax's training default)."""


@dataclasses.dataclass(frozen=True)
class DoneOnly:
    """A Brax env (with its EpisodeWrapper) seen as a `done`-only env in gymnax's call signature, for
    `envs.AutoReset`: reset(key, params) -> (obs, state); step(key, state, action, params) -> (obs,
    state, reward, done, info). Brax steps deterministically, so the key is unused; params are None."""

    env: Any

    def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        state = self.env.reset(key)
        return state.obs, state

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: Any) -> tuple[Any, ...]:
        reached = self.env.step(state, action)
        return reached.obs, reached, reached.reward, reached.done > 0, {}


def at_time_limit(state: Any, params: Any) -> jax.Array:
    """Whether Brax's EpisodeWrapper marked the reached state as cut by the time limit."""
    return state.info["truncation"] > 0


def parse(name: str) -> tuple[str, str | None]:
    """'ant@spring' -> ('ant', 'spring'); 'ant' -> ('ant', None), or a ConfigError naming what is allowed."""
    env_name, sep, backend = name.partition("@")
    if env_name not in NAMES:
        raise ConfigError(f"env_id='brax:{name}' is unknown: known are {', '.join('brax:' + n for n in NAMES)}")
    if sep and backend not in BACKENDS:
        raise ConfigError(f"env_id='brax:{name}' has backend {backend!r}: allowed are {', '.join(BACKENDS)}")
    return env_name, (backend if sep else None)


def build(name: str) -> tuple[AutoReset, None, EnvSpec]:
    """(env in the protocol, None for params, EnvSpec) for a Brax id."""
    env_name, backend = parse(name)
    from brax import envs as brax_envs
    from brax.envs.wrappers.training import EpisodeWrapper

    env = brax_envs.get_environment(env_name, **({"backend": backend} if backend else {}))
    act = int(env.action_size)
    spec = EnvSpec(name, (int(env.observation_size),), "continuous", act, (-1.0,) * act, (1.0,) * act,
                   max_episode_steps=EPISODE_LENGTH)  # fmt: skip
    wrapped = AutoReset(DoneOnly(EpisodeWrapper(env, EPISODE_LENGTH, action_repeat=1)), at_time_limit)
    trace_once(wrapped, act)
    return wrapped, None, spec


def trace_once(env: AutoReset, action_dim: int) -> None:
    """Trace one reset and step without compiling, so an env that this JAX cannot run fails when it is
    built, with its own error (Brax 0.14's swimmer calls `jnp.clip(a_min=...)`, which JAX 0.10 removed),
    instead of deep inside a training program."""
    import jax.numpy as jnp

    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    _, state = jax.eval_shape(env.reset, key, None)
    jax.eval_shape(env.step, key, state, jax.ShapeDtypeStruct((action_dim,), jnp.float32), None)
