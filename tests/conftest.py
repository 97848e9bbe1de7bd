"""Shared fixtures: one small config whose compiled programs every test module reuses."""

from __future__ import annotations

import os
import tempfile

import pytest

# Tests must not write into the user's compilation cache.
os.environ.setdefault("A2C_JAX_CACHE_DIR", tempfile.mkdtemp(prefix="a2c-jax-test-cache-"))

from a2c_jax.config import A2CConfig

# 4 envs x 8 steps, 12 updates: compiles in seconds, shared by the train, checkpoint and CLI tests.
SMALL = A2CConfig(env_id="CartPole-v1", num_envs=4, num_steps=8, total_timesteps=4 * 8 * 12)


@pytest.fixture(scope="session")
def small_config() -> A2CConfig:
    return SMALL
