"""Environment suites behind the env protocol: Craftax (`a2c-jax[craftax]`) walked like gymnax's envs
in test_all_envs.py (built, stepped through VecEnv, trained a few updates with finite metrics), and
its terminated / truncated split checked against the game's own state."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a2c_jax.config import ConfigError, preset
from a2c_jax.envs import VecEnv, make_env

pytest.importorskip("craftax", reason="the craftax extra is not installed (pip install 'a2c-jax[craftax]')")

CLASSIC = "craftax:Craftax-Classic-Symbolic-v1"


def test_craftax_ids_and_errors():
    _, params, spec = make_env(CLASSIC)
    assert spec.action_kind == "discrete" and spec.action_dim == 17 and len(spec.obs_shape) == 1
    assert spec.max_episode_steps == params.max_timesteps == 10_000
    with pytest.raises(ConfigError, match="known are craftax:Craftax-Symbolic-v1"):
        make_env("craftax:Craftax-Pixels-v1")


@pytest.mark.slow
def test_craftax_time_limit_truncates_and_death_terminates():
    """A state one step before the time limit truncates (bootstrap) and resets; a player with no
    health left terminates."""
    _env, params, spec = make_env(CLASSIC)
    vec = VecEnv(_env, params, spec, 2)
    _, state = vec.reset(jax.random.PRNGKey(0))
    inner = state.inner
    timestep = inner.timestep.at[0].set(params.max_timesteps - 1)
    health = inner.player_health.at[1].set(-10.0)
    state = state.replace(inner=inner.replace(timestep=timestep, player_health=health))
    _, after, _, terminated, truncated, info = vec.step(jax.random.PRNGKey(1), state, jnp.array([0, 0]), 0.99)
    assert terminated.tolist() == [False, True] and truncated.tolist() == [True, False]
    assert after.inner.timestep.tolist() == [0, 0]  # both reset
    assert info.episode_length.tolist() == [1, 1]


@pytest.mark.slow
def test_craftax_trains_a_few_updates():
    config, hparams = preset("sb3", CLASSIC)
    config = dataclasses.replace(config, num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3).validate()
    from a2c_jax.core.train import make_train

    _, metrics = jax.jit(make_train(config))(jax.random.PRNGKey(0), hparams)
    assert np.isfinite(np.asarray(metrics.loss)).all() and np.isfinite(np.asarray(metrics.grad_norm)).all()
