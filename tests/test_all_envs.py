"""Every registered gymnax environment either trains a few updates with finite metrics, or is refused
with the clear 'unsupported'/'could not be built' error (the README lists which are which)."""

from __future__ import annotations

import gymnax
import jax
import numpy as np
import pytest

from a2c_jax.config import A2CConfig, ConfigError, HParams
from a2c_jax.core.train import make_train
from a2c_jax.envs import make_env

# the whole module is in the full suite only: trains every gymnax environment
pytestmark = pytest.mark.slow

# MNISTBandit downloads MNIST when it is built: offline it must fail with a clear error (online it trains).
NEEDS_DOWNLOAD = {"MNISTBandit-bsuite"}
BUILTIN = [e for e in gymnax.registered_envs if not e.endswith("-test")]


@pytest.mark.parametrize("env_id", BUILTIN)
def test_every_gymnax_env(env_id):
    if env_id in NEEDS_DOWNLOAD:
        try:
            make_env(env_id)
        except ConfigError as err:
            assert f"env_id='{env_id}' could not be built" in str(err)
            return
    config = A2CConfig(env_id=env_id, num_envs=2, num_steps=4, total_timesteps=16, hidden_sizes=(16,))
    state, metrics = jax.jit(make_train(config))(jax.random.PRNGKey(0), HParams())
    assert int(state.update_step) == 2
    for name, value in metrics._asdict().items():
        assert np.all(np.isfinite(np.asarray(value))), (env_id, name)
