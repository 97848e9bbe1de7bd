"""Running mean and variance of a stream of arrays (parallel Welford / Chan et al.), and the
normalisation SB3's VecNormalize applies with them."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct

CLIP_OBS = 10.0
CLIP_REWARD = 10.0
NORM_EPS = 1e-8


@struct.dataclass
class RunningMeanStd:
    """Running mean and variance of a stream of arrays of shape S (count starts at 1e-4, as SB3)."""

    mean: jax.Array  # S
    var: jax.Array  # S
    count: jax.Array  # ()


def rms_init(shape: tuple[int, ...]) -> RunningMeanStd:
    """Fresh statistics: mean 0, variance 1, count 1e-4."""
    return RunningMeanStd(jnp.zeros(shape), jnp.ones(shape), jnp.asarray(1e-4, jnp.float32))


def rms_update(rms: RunningMeanStd, batch: jax.Array) -> RunningMeanStd:
    """Merge a batch [B, *S] into the statistics (Chan et al.'s parallel variance formula)."""
    chex.assert_shape(batch, (None, *rms.mean.shape))
    b_mean = jnp.mean(batch, axis=0)
    b_var = jnp.var(batch, axis=0)
    b_count = jnp.asarray(batch.shape[0], jnp.float32)
    delta = b_mean - rms.mean
    total = rms.count + b_count
    mean = rms.mean + delta * b_count / total
    m2 = rms.var * rms.count + b_var * b_count + jnp.square(delta) * rms.count * b_count / total
    return RunningMeanStd(mean, m2 / total, total)


def rms_normalize(rms: RunningMeanStd, x: jax.Array, clip: float) -> jax.Array:
    """(x - mean) / sqrt(var + eps), clipped to [-clip, clip]; x is [..., *S]."""
    return jnp.clip((x - rms.mean) / jnp.sqrt(rms.var + NORM_EPS), -clip, clip)
