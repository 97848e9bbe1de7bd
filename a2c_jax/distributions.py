"""Action distributions as pure functions of their parameters.

Categorical: parameters are logits [..., A]; actions are int32 [...].
DiagGaussian: parameters are (mean [..., D], log_std [D] or [..., D]); actions are float32 [..., D].
Each family is a `DistributionFns` of four functions, so callers pick one statically and never
branch on it inside compiled code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PiParams = Any  # logits, or a (mean, log_std) tuple


class DistributionFns(NamedTuple):
    """sample(key, p) -> action; log_prob(p, a) -> [...]; entropy(p) -> [...]; mode(p) -> action."""

    sample: Callable[[jax.Array, PiParams], jax.Array]
    log_prob: Callable[[PiParams, jax.Array], jax.Array]
    entropy: Callable[[PiParams], jax.Array]
    mode: Callable[[PiParams], jax.Array]


def categorical_sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    """Sample actions [...] from logits [..., A]."""
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def categorical_log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    """log pi(a) [...] for logits [..., A] and integer actions [...]."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]


def categorical_entropy(logits: jax.Array) -> jax.Array:
    """-sum_a p(a) log p(a) [...] for logits [..., A]."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def categorical_mode(logits: jax.Array) -> jax.Array:
    """Most likely action [...] (greedy)."""
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_sample(key: jax.Array, params: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Sample [..., D] from N(mean, exp(log_std)^2)."""
    mean, log_std = params
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


def gaussian_log_prob(params: tuple[jax.Array, jax.Array], action: jax.Array) -> jax.Array:
    """Sum over the D independent dimensions of log N(a; mean, std^2): [...]."""
    mean, log_std = params
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - 0.5 * _LOG_2PI, axis=-1)


def gaussian_entropy(params: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Sum over D of 0.5 + 0.5 log(2 pi) + log_std: [...]."""
    mean, log_std = params
    per_dim = jnp.broadcast_to(0.5 + 0.5 * _LOG_2PI + log_std, mean.shape)
    return jnp.sum(per_dim, axis=-1)


def gaussian_mode(params: tuple[jax.Array, jax.Array]) -> jax.Array:
    """The mean [..., D] (greedy)."""
    return params[0]


CATEGORICAL = DistributionFns(categorical_sample, categorical_log_prob, categorical_entropy, categorical_mode)
DIAG_GAUSSIAN = DistributionFns(gaussian_sample, gaussian_log_prob, gaussian_entropy, gaussian_mode)


def distribution_for(action_kind: str) -> DistributionFns:
    """The distribution family for an EnvSpec.action_kind ("discrete" or "continuous")."""
    return CATEGORICAL if action_kind == "discrete" else DIAG_GAUSSIAN
