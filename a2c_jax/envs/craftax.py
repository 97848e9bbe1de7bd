"""Craftax (`craftax:Craftax-Symbolic-v1`, `craftax:Craftax-Classic-Symbolic-v1`): the JAX open-world
benchmark, symbolic observations (a flat float vector) and discrete actions.

Craftax ends an episode when the player dies or at `params.max_timesteps` (10,000 steps); its auto-
resetting envs report only `done`, so the adapter wraps the NoAutoReset ones in
`envs.OptimisticAutoReset`, which splits `done` into terminated (death: no bootstrap) and truncated (the
time limit: bootstrap from V(final observation)). Generating a world costs 10-25 steps (2-core CPU,
64 envs: 200-249 ms for 64 resets, 9.7-18 ms for 64 steps; benchmarks/results/cpu-env-step.json), so a
step computes one fresh world per 16 envs, not one per env, as Craftax's own OptimisticResetVecEnvWrapper
does.
The pixel variants are not offered: an MLP over 130k pixels is not a sensible default, and the CNN here is MinAtar's.
"""

from __future__ import annotations

from typing import Any

from a2c_jax.config import ConfigError
from a2c_jax.envs.spaces import EnvSpec
from a2c_jax.envs.wrappers import OptimisticAutoReset

NAMES = ("Craftax-Symbolic-v1", "Craftax-Classic-Symbolic-v1")


def at_time_limit(state: Any, params: Any) -> Any:
    """Whether a reached Craftax state is at the episode's time limit."""
    return state.timestep >= params.max_timesteps


def build(name: str) -> tuple[OptimisticAutoReset, Any, EnvSpec]:
    """(env in the protocol, its default params, EnvSpec) for a Craftax symbolic id."""
    if name not in NAMES:
        raise ConfigError(f"env_id='craftax:{name}' is unknown: known are {', '.join('craftax:' + n for n in NAMES)}")
    from craftax.craftax_env import make_craftax_env_from_name

    env = make_craftax_env_from_name(name, auto_reset=False)
    params = env.default_params
    obs_shape = tuple(int(d) for d in env.observation_space(params).shape)
    spec = EnvSpec(name, obs_shape, "discrete", int(env.action_space(params).n),
                   max_episode_steps=int(params.max_timesteps))  # fmt: skip
    return OptimisticAutoReset(env, at_time_limit), params, spec
