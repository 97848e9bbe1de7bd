"""Brax (`a2c-jax[brax]`) behind the env protocol: ids and errors, the EpisodeWrapper's time limit mapped
to truncated and the env's own end to terminated (checked on a hand-made episode), and a few training
updates with finite metrics. Every Brax env is built and stepped by `python -m benchmarks.walk_envs
--family brax` (5-30 s per env on a 2-core CPU, too slow for this suite; its results file says what it
found); here inverted_pendulum on the spring backend stands for the family."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a2c_jax.config import ConfigError, preset
from a2c_jax.envs import VecEnv, make_env

pytest.importorskip("brax", reason="the brax extra is not installed (pip install 'a2c-jax[brax]')")

PENDULUM = "brax:inverted_pendulum@spring"


def test_brax_ids_and_errors():
    _, params, spec = make_env(PENDULUM)
    assert params is None and spec.env_id == PENDULUM
    assert spec.action_kind == "continuous" and spec.action_dim == 1 and spec.obs_shape == (4,)
    assert spec.action_low == (-1.0,) and spec.action_high == (1.0,) and spec.max_episode_steps == 1000
    with pytest.raises(ConfigError, match="known are brax:ant"):
        make_env("brax:cartpole")
    with pytest.raises(ConfigError, match="allowed are generalized, positional, spring, mjx"):
        make_env("brax:hopper@bullet")


@pytest.mark.slow
def test_brax_time_limit_truncates_and_the_env_end_terminates():
    """Two pendulums: env 0 held still, env 1 pushed over. At the step where env 1 falls, both are put
    one step before the 1,000-step limit: env 0 is truncated (bootstrap), env 1 terminated (its own end
    wins, as in Brax's EpisodeWrapper); both reset, and the final observation is the reached one."""
    vec = VecEnv(*make_env(PENDULUM), 2)
    step = jax.jit(vec.step)
    _, state = vec.reset(jax.random.PRNGKey(0))
    push = jnp.array([[0.0], [1.0]])
    for t in range(100):
        _, after, _, terminated, truncated, _ = step(jax.random.PRNGKey(t), state, push, 0.99)
        if bool(terminated[1]):
            break
        assert not bool(terminated[0]) and not bool(truncated.any())
        state = after
    else:
        pytest.fail("the pushed pendulum never fell")
    fell_at = t + 1
    info = dict(state.inner.info, steps=jnp.full((2,), 999.0))
    state = state.replace(inner=state.inner.replace(info=info))
    _, after, _, terminated, truncated, out = step(jax.random.PRNGKey(t), state, push, 0.99)
    assert terminated.tolist() == [False, True] and truncated.tolist() == [True, False]
    assert after.inner.info["steps"].tolist() == [0.0, 0.0]  # both reset
    assert out.episode_length.tolist() == [fell_at, fell_at]
    assert abs(float(out.final_obs[1, 1])) > 0.2 >= abs(float(after.inner.obs[1, 1]))  # reached vs fresh pole angle


@pytest.mark.slow
def test_brax_trains_a_few_updates():
    config, hparams = preset("default", PENDULUM)
    config = dataclasses.replace(config, num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3).validate()
    from a2c_jax.core.train import make_train

    _, metrics = jax.jit(make_train(config))(jax.random.PRNGKey(0), hparams)
    assert np.isfinite(np.asarray(metrics.loss)).all() and np.isfinite(np.asarray(metrics.grad_norm)).all()
