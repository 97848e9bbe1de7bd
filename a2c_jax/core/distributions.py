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
    """sample(key, p) -> action; log_prob(p, a) -> [...]; entropy(p) -> [...]; mode(p) -> action.

    `entropy` is None for a distribution without a closed form (tanh-squashed gSDE): the loss then
    estimates it by -log_prob of the taken actions, as SB3's A2C does. `explore(p, weights)` -> action
    is given for gSDE families only: the action from exploration matrices the rollout keeps for
    several steps (weights [N, F, D]; see `gsde_weights`).
    """

    sample: Callable[[jax.Array, PiParams], jax.Array]
    log_prob: Callable[[PiParams, jax.Array], jax.Array]
    entropy: Callable[[PiParams], jax.Array] | None
    mode: Callable[[PiParams], jax.Array]
    explore: Callable[[PiParams, jax.Array], jax.Array] | None = None


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


# --- generalised state-dependent exploration (gSDE, Raffin et al. 2022), as SB3 computes it ------

GSDE_EPS = 1e-6


class GSDEParams(NamedTuple):
    """A gSDE policy's parameters: the action mean [..., D]; the std of the exploration weights
    [F, D] (`gsde_std` of the learned log std); the actor's latent features [..., F] (held constant:
    no gradient flows into the features through the noise, SB3's `learn_features=False`)."""

    mean: jax.Array
    std: jax.Array
    latent: jax.Array


def gsde_std(log_std: jax.Array, action_dim: int, use_expln: bool) -> jax.Array:
    """Weights' std [F, D] from the learned log std [F, D] (full_std) or [F, 1] (broadcast over D):
    exp, or expln (exp below 0, log1p(x) + 1 above) to keep it from growing too fast."""
    if use_expln:
        below = jnp.exp(log_std) * (log_std <= 0)
        safe = log_std * (log_std > 0) + GSDE_EPS
        std = below + (jnp.log1p(safe) + 1.0) * (log_std > 0)
    else:
        std = jnp.exp(log_std)
    return jnp.broadcast_to(std, (log_std.shape[0], action_dim))


def gsde_scale(params: GSDEParams) -> jax.Array:
    """The action's std [..., D]: sqrt(latent^2 @ std^2 + eps) (the noise latent @ W, W ~ N(0, std^2),
    is Gaussian with this std for given features)."""
    latent = jax.lax.stop_gradient(params.latent)
    return jnp.sqrt(jnp.square(latent) @ jnp.square(params.std) + GSDE_EPS)


def gsde_log_prob(params: GSDEParams, action: jax.Array) -> jax.Array:
    """log N(action; mean, gsde_scale^2) summed over D: [...]."""
    scale = gsde_scale(params)
    z = (action - params.mean) / scale
    return jnp.sum(-0.5 * jnp.square(z) - jnp.log(scale) - 0.5 * _LOG_2PI, axis=-1)


def gsde_entropy(params: GSDEParams) -> jax.Array:
    """Entropy of N(mean, gsde_scale^2) summed over D: [...]."""
    return jnp.sum(0.5 + 0.5 * _LOG_2PI + jnp.log(gsde_scale(params)), axis=-1)


def gsde_weights(key: jax.Array, std: jax.Array, count: int) -> jax.Array:
    """`count` exploration matrices W ~ N(0, std^2), one per environment: [count, F, D]."""
    return std * jax.random.normal(key, (count, *std.shape), std.dtype)


def gsde_explore(params: GSDEParams, weights: jax.Array) -> jax.Array:
    """The exploratory action mean + latent @ W with each environment's own matrix: latent [N, F],
    weights [N, F, D] -> [N, D]."""
    latent = jax.lax.stop_gradient(params.latent)
    return params.mean + jnp.einsum("...f,...fd->...d", latent, weights)


def gsde_sample(key: jax.Array, params: GSDEParams) -> jax.Array:
    """A sample with freshly drawn weights for every row (gSDE with a new matrix at each step)."""
    weights = params.std * jax.random.normal(key, (*params.latent.shape, params.std.shape[-1]), params.std.dtype)
    return gsde_explore(params, weights)


def gsde_mode(params: GSDEParams) -> jax.Array:
    """The mean [..., D] (greedy)."""
    return params.mean


GSDE = DistributionFns(gsde_sample, gsde_log_prob, gsde_entropy, gsde_mode, gsde_explore)


# --- tanh-squashed gSDE (SB3's `squash_output=True`): actions in (-1, 1), rescaled to the bounds ----

_F32_EPS = float(jnp.finfo(jnp.float32).eps)


def squashed_gsde_log_prob(params: GSDEParams, action: jax.Array) -> jax.Array:
    """log-density [...] of a = tanh(u), u ~ gSDE: log N(u) - sum_D log(1 - a^2 + 1e-6), u = atanh(a).

    The action is first clamped to [-1 + eps, 1 - eps] (float32 eps) so that actions on the bounds
    stay finite, and atanh is 0.5 (log1p(a) - log1p(-a)), as SB3's TanhBijector. The Jacobian term
    uses a itself for tanh(atanh(a)): XLA's float32 tanh saturates to exactly 1 from |u| ~ 7.9, which
    would turn 1 - tanh(u)^2 into 0 on clamped actions, where PyTorch keeps 2.4e-7.
    """
    a = jnp.clip(action, -1.0 + _F32_EPS, 1.0 - _F32_EPS)
    u = 0.5 * (jnp.log1p(a) - jnp.log1p(-a))
    return gsde_log_prob(params, u) - jnp.sum(jnp.log(1.0 - jnp.square(a) + GSDE_EPS), axis=-1)


def squashed_gsde_sample(key: jax.Array, params: GSDEParams) -> jax.Array:
    """tanh of a gSDE sample [..., D] with fresh weights per row."""
    return jnp.tanh(gsde_sample(key, params))


def squashed_gsde_mode(params: GSDEParams) -> jax.Array:
    """tanh(mean) [..., D] (greedy)."""
    return jnp.tanh(params.mean)


def squashed_gsde_explore(params: GSDEParams, weights: jax.Array) -> jax.Array:
    """tanh of `gsde_explore`: [N, D] in (-1, 1)."""
    return jnp.tanh(gsde_explore(params, weights))


SQUASHED_GSDE = DistributionFns(
    squashed_gsde_sample, squashed_gsde_log_prob, None, squashed_gsde_mode, squashed_gsde_explore
)
