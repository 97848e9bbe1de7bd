"""The unrolled Threefry-2x32 lowering (a2c_jax/prng.py): the same bits as the Threefry spec, and in
effect for every program a2c_jax builds on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry2x32_p

from a2c_jax.core.prng import threefry2x32
from a2c_jax.runs.process import configure_process

configure_process()  # applies the lowering (conftest does too; this module is about it)

# Random123's known-answer vectors for threefry2x32_20: (key, counter) -> output
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def numpy_threefry(key: tuple[int, int], counter: tuple[int, int]) -> tuple[int, int]:
    """Threefry-2x32, 20 rounds, one counter pair, in plain Python integers (Salmon et al. 2011)."""
    mask = 0xFFFFFFFF
    rotations = [13, 15, 26, 6, 17, 29, 16, 24]
    ks = [key[0], key[1], key[0] ^ key[1] ^ 0x1BD11BDA]
    x = [(counter[0] + ks[0]) & mask, (counter[1] + ks[1]) & mask]
    for r in range(20):
        x[0] = (x[0] + x[1]) & mask
        d = rotations[r % 8]
        x[1] = (((x[1] << d) | (x[1] >> (32 - d))) & mask) ^ x[0]
        if r % 4 == 3:
            s = r // 4 + 1
            x[0] = (x[0] + ks[s % 3]) & mask
            x[1] = (x[1] + ks[(s + 1) % 3] + s) & mask
    return x[0], x[1]


def words(*values: int) -> list[np.ndarray]:
    return [np.asarray(v, np.uint32) for v in values]


@pytest.mark.parametrize(("key", "counter", "expected"), KNOWN_ANSWERS)
def test_known_answers(key, counter, expected):
    assert numpy_threefry(key, counter) == expected  # the reference itself
    ours = jax.jit(threefry2x32)(*words(*key, *counter))
    primitive = jax.jit(lambda *a: threefry2x32_p.bind(*a))(*words(*key, *counter))
    assert [int(w) for w in ours] == list(expected)
    assert [int(w) for w in primitive] == list(expected)


def test_primitive_equals_reference_on_random_words():
    rng = np.random.default_rng(0)
    k0, k1 = rng.integers(0, 2**32, size=2, dtype=np.uint64).astype(np.uint32)
    x0, x1 = rng.integers(0, 2**32, size=(2, 257), dtype=np.uint64).astype(np.uint32)
    out0, out1 = jax.jit(lambda *a: threefry2x32_p.bind(*a))(k0, k1, x0, x1)  # scalar keys broadcast
    expected = np.array([numpy_threefry((int(k0), int(k1)), (int(a), int(b))) for a, b in zip(x0, x1, strict=True)])
    np.testing.assert_array_equal(np.asarray(out0), expected[:, 0])
    np.testing.assert_array_equal(np.asarray(out1), expected[:, 1])


def normal_program_text() -> str:
    return jax.jit(lambda k: jax.random.normal(k, (8, 4))).lower(jax.random.PRNGKey(3)).compile().as_text()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the lowering replaced is the CPU's")
def test_cpu_programs_draw_without_a_loop():
    assert " while(" not in normal_program_text()


def test_opt_out_keeps_jax_lowering():
    code = (
        "import jax, a2c_jax.runs.process\n"
        "a2c_jax.runs.process.configure_process()\n"
        "t = jax.jit(lambda k: jax.random.normal(k, (8, 4))).lower(jax.random.PRNGKey(3)).compile().as_text()\n"
        "print(' while(' in t, jax.random.normal(jax.random.PRNGKey(3), (3,)).tolist())\n"
    )
    env = {**os.environ, "A2C_JAX_ROLLED_THREEFRY": "1", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    looped, values = proc.stdout.strip().split(" ", 1)
    assert looped == "True"  # JAX's rolled loop, and the same numbers as the unrolled lowering here
    assert values == str(jnp.asarray(jax.random.normal(jax.random.PRNGKey(3), (3,))).tolist())


def test_importing_the_library_changes_nothing_in_the_process():
    """No lowering, logger level or warning filter is set by an import: a fresh process that imports
    the whole library still draws with JAX's rolled loop and keeps absl's and orbax's log levels; one
    explicit `configure_process()` switches both."""
    code = (
        "import logging, warnings, jax\n"
        "levels = lambda: [logging.getLogger(n).level for n in ('absl', 'orbax')]\n"
        "before, filters = levels(), list(warnings.filters)\n"
        "import a2c_jax.core.train, a2c_jax.core.distributions, a2c_jax.runs.checkpoint, a2c_jax.runs.runner\n"
        "import a2c_jax.population.sweep, a2c_jax.rlhf.run, a2c_jax.cli\n"
        "a2c_jax.runs.checkpoint._orbax()\n"
        "draw = lambda: jax.jit(lambda k: jax.random.normal(k, (8, 4)))  # a new function: traced anew\n"
        "text = lambda: draw().lower(jax.random.PRNGKey(3)).compile().as_text()\n"
        "print(' while(' in text(), levels() == before, list(warnings.filters) == filters)\n"
        "import a2c_jax.runs.process; a2c_jax.runs.process.configure_process()\n"
        "print(' while(' in text(), levels() == [logging.CRITICAL] * 2)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "A2C_JAX_ROLLED_THREEFRY"} | {"JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True", "True", "False", "True"], proc.stdout
