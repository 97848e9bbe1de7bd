"""End-to-end learning: agents trained with fixed seeds must actually learn (margins leave room)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a2c_jax.config import preset
from a2c_jax.core.evaluate import evaluate
from a2c_jax.core.train import build_agent, init_state, make_train


def train_and_evaluate(config, hparams, seeds, episodes=16):
    """Train one agent per seed in a single vmapped program; greedy returns [seeds] before and after."""
    agent = build_agent(config)
    train = make_train(agent)

    def one(key):
        before = init_state(agent, hparams.as_arrays(), key)
        state, _ = train(key, hparams)
        eval_key = jax.random.fold_in(key, 7)
        first = evaluate(agent, before.params, before.env_state.obs_rms, eval_key, episodes, False)
        last = evaluate(agent, state.params, state.env_state.obs_rms, eval_key, episodes)
        return first.returns.mean(), last.returns.mean()

    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    before, after = jax.jit(jax.vmap(one))(keys)
    return np.asarray(before), np.asarray(after)


@pytest.mark.slow
def test_cartpole_default_preset_solves_every_seed_in_one_program():
    config, hparams = preset("default", "CartPole-v1")
    before, after = train_and_evaluate(config, hparams, [0, 1, 2, 3])
    assert np.all(before < 100), before  # a random policy balances for a few dozen steps
    assert np.all(after >= 475), after


@pytest.mark.slow
def test_pendulum_improves_clearly_over_random_policy():
    config, hparams = preset("default", "Pendulum-v1")
    before, after = train_and_evaluate(config, hparams, [0, 1, 2])
    assert np.all(before < -900), before  # random torques: about -1200
    assert np.all(after > -500), after  # trained agents swing up: about -200
