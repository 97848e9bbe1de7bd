"""Shared fixtures: one small config whose compiled programs every test module reuses."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from a2c_jax.config import A2CConfig
from a2c_jax.runs.process import configure_process

# the tests run with the command's process-wide settings (the CPU's Threefry lowering, quiet orbax logs)
configure_process()

# Tests must not write into the user's compilation cache; subprocesses inherit this one.
_CACHE = None if "A2C_JAX_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="a2c-jax-test-cache-")
if _CACHE is not None:
    os.environ["A2C_JAX_CACHE_DIR"] = _CACHE


# 4 envs x 8 steps, 12 updates: compiles in seconds, shared by the train, checkpoint and CLI tests.
SMALL = A2CConfig(env_id="CartPole-v1", num_envs=4, num_steps=8, total_timesteps=4 * 8 * 12)


@pytest.fixture(scope="session")
def small_config() -> A2CConfig:
    return SMALL


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cache():
    """The cache directory made for this session goes when the session ends."""
    yield
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)
