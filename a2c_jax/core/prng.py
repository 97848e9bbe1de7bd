"""Threefry-2x32 lowered as straight-line code on the CPU.

JAX's default PRNG hashes counters with Threefry-2x32 (Salmon et al. 2011: 20 rounds of add, rotate
and xor on pairs of uint32 words, a key injection after every 4). On the CPU, JAX lowers its
`threefry2x32` primitive as a loop of 5 iterations, to keep compile times down. Inside a training
program on a small batch that loop dominates: XLA runs each iteration as about 16 kernels, 13 of
them copies of the loop's state, and an A2C update draws keys and samples several times per step.
`lower_threefry_unrolled_on_cpu` registers the same 20 rounds written out instead: the same bits
(tested against Random123's known answers and a NumPy transcription), a few fused kernels per call,
more env steps per second at small batches (the A/B figures: benchmarks/results/cpu-ab.json); the
training chunk compiles no slower, a program with many draws (the initialisation) a little slower.
Nothing applies it on
import: `a2c_jax.runs.process.configure_process()` does, as the CLI's first step (set
A2C_JAX_ROLLED_THREEFRY=1 to keep JAX's lowering); other platforms are untouched. A JAX without the
two public hooks used here (`jax.extend.random.threefry2x32_p`, `jax.interpreters.mlir.register_lowering`)
keeps its own lowering, with a warning.
"""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np

ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
"""Rotation distances of the rounds; groups of 4 alternate between the two rows."""
KEY_PARITY = 0x1BD11BDA
"""Threefish's constant in the third key word: k2 = k0 ^ k1 ^ KEY_PARITY."""


def rotate_left(x: jax.Array, distance: int) -> jax.Array:
    """uint32 rotation of every element of x by `distance` bits (0 < distance < 32)."""
    return jax.lax.shift_left(x, np.uint32(distance)) | jax.lax.shift_right_logical(x, np.uint32(32 - distance))


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds of key (k0, k1) applied to counter words (x0, x1).

    Every argument is uint32 and they broadcast together; returns the two hashed words, each of the
    broadcast shape.
    """
    keys = (k0, k1, k0 ^ k1 ^ np.uint32(KEY_PARITY))
    x0, x1 = x0 + keys[0], x1 + keys[1]
    for group in range(5):
        for distance in ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = rotate_left(x1, distance) ^ x0
        x0 = x0 + keys[(group + 1) % 3]
        x1 = x1 + keys[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def lower_threefry_unrolled_on_cpu() -> bool:
    """Lower JAX's threefry2x32 primitive on the CPU with `threefry2x32` (an out-of-line function).

    Returns False, changing nothing, when A2C_JAX_ROLLED_THREEFRY=1 asks for JAX's own lowering or
    this JAX lacks the hooks. Programs traced afterwards use it; the bits they draw are the same either way.
    """
    if os.environ.get("A2C_JAX_ROLLED_THREEFRY") == "1":
        return False
    try:
        from jax.extend.random import threefry2x32_p
        from jax.interpreters import mlir
    except (ImportError, AttributeError) as err:
        warnings.warn(f"keeping JAX's own Threefry lowering on the CPU: {err}", RuntimeWarning, stacklevel=2)
        return False
    rule = mlir.lower_fun(threefry2x32, multiple_results=True)
    mlir.register_lowering(threefry2x32_p, rule, platform="cpu", inline=False)
    return True
