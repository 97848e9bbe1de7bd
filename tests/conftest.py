"""Shared fixtures and helpers: one small config whose compiled programs every test module reuses, the
command's path, the small-run flags and a wait for a subprocess to reach a moment. Test modules import
the helpers with `from conftest import CLI, SMALL_FLAGS, wait_for`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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


# the console script of this environment, and the flags of a run that compiles in seconds (12 updates)
CLI = [str(Path(sys.executable).with_name("a2c-jax"))]
SMALL_FLAGS = ["--preset", "sb3", "--num-envs", "4", "--num-steps", "8", "--total-timesteps", "384"]


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen | None = None, seconds: float = 120.0) -> None:
    """Poll `predicate` until it holds; fail the test, with the process's last output, when `proc` ends
    first (it is killed when the time runs out)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        ended = proc is not None and proc.poll() is not None
        if ended or time.monotonic() > deadline:
            text = ""
            if proc is not None:
                if not ended:
                    proc.kill()
                out, err = proc.communicate(timeout=30)
                text = (err or "") + (out or "")
            pytest.fail(f"the moment never came (exit {proc.returncode if proc else None}): {text[-2000:]}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def small_config() -> A2CConfig:
    return SMALL


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cache():
    """The cache directory made for this session goes when the session ends."""
    yield
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """{"gpt2" | "llama": directory} of random 2-layer Hugging Face models with a BPE tokenizer trained
    here (tests/_hf_models.py; skipped without the `hf` extra and torch)."""
    from _hf_models import save_checkpoints

    return save_checkpoints(tmp_path_factory)
