"""The A2C loss (SB3's form): policy gradient + vf_coef * value MSE - ent_coef * entropy."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from a2c_jax.config import HParams
from a2c_jax.core.networks import Carry, Params, Policy


class Batch(NamedTuple):
    """One rollout's training batch, leading axes [T, N].

    obs [T, N, *obs_shape]; action [T, N] or [T, N, D]; advantage [T, N]; target_return [T, N];
    done [T, N] (episode ended at t, so the policy's carry is reset after it); carry: the policy's
    hidden state at the start of the rollout (leaves [N, ...]; () for feed-forward policies).
    """

    obs: jax.Array
    action: jax.Array
    advantage: jax.Array
    target_return: jax.Array
    done: jax.Array
    carry: Carry = ()


class LossMetrics(NamedTuple):
    """Scalars describing one loss evaluation."""

    loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    explained_variance: jax.Array


def explained_variance(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """1 - Var(target - pred) / Var(target) over the masked entries; NaN-free (0 when Var(target) is 0)."""
    if mask is None:
        var_t, var_e = jnp.var(target), jnp.var(target - pred)
    else:
        var_t = masked_mean(jnp.square(target - masked_mean(target, mask)), mask)
        err = target - pred
        var_e = masked_mean(jnp.square(err - masked_mean(err, mask)), mask)
    return jnp.where(var_t > 0, 1.0 - var_e / jnp.where(var_t > 0, var_t, 1.0), 0.0)


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of x over the entries where mask is true (all entries when mask is None); 0 if none."""
    if mask is None:
        return jnp.mean(x)
    weights = mask.astype(x.dtype)
    return jnp.sum(x * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def standardize(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """(x - mean) / (std + 1e-8) over the masked entries, std unbiased (n - 1) as PyTorch's
    `Tensor.std()` that SB3 (and TRL's masked whitening) use. Masked-out entries become 0."""
    if mask is None:
        return (x - x.mean()) / (x.std(ddof=1) + 1e-8)
    weights = mask.astype(x.dtype)
    count = jnp.sum(weights)
    mean = jnp.sum(x * weights) / jnp.maximum(count, 1.0)
    var = jnp.sum(jnp.square(x - mean) * weights) / jnp.maximum(count - 1.0, 1.0)
    return jnp.where(mask, (x - mean) / (jnp.sqrt(var) + 1e-8), 0.0)


def a2c_objective(
    log_prob: jax.Array,
    values: jax.Array,
    entropy: jax.Array,
    advantage: jax.Array,
    target_return: jax.Array,
    vf_coef: jax.Array | float,
    ent_coef: jax.Array | float,
    normalize_advantage: bool = False,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, LossMetrics]:
    """loss = -mean(A * log pi(a|s)) + vf_coef * mean((R - V(s))^2) - ent_coef * mean(H[pi(.|s)]).

    All inputs share one shape (any rank: [T, N] for environments, [L, B] for tokens); means run over
    the entries where `mask` is true (all when None). Advantages and target returns are constants
    (no gradient flows through them). The value term is the plain mean squared error, without a 1/2,
    as in SB3.

    Returns:
        (scalar loss, LossMetrics).
    """
    chex.assert_equal_shape([log_prob, values, entropy, advantage, target_return])
    advantage = jax.lax.stop_gradient(advantage)
    if normalize_advantage:
        advantage = standardize(advantage, mask)
    target = jax.lax.stop_gradient(target_return)
    entropy_mean = masked_mean(entropy, mask)
    policy_loss = -masked_mean(advantage * log_prob, mask)
    value_loss = masked_mean(jnp.square(target - values), mask)
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy_mean
    ev = explained_variance(values, target, mask)
    return loss, LossMetrics(loss, policy_loss, value_loss, entropy_mean, ev)


def a2c_loss(
    params: Params,
    policy: Policy,
    batch: Batch,
    hparams: HParams,
    normalize_advantage: bool = False,
) -> tuple[jax.Array, LossMetrics]:
    """The A2C objective (`a2c_objective`) of a rollout batch [T, N], means over all T * N samples.

    A recurrent policy re-runs the rollout from `batch.carry`, so its gradient flows through time.

    Returns:
        (scalar loss, LossMetrics).
    """
    chex.assert_rank([batch.advantage, batch.target_return, batch.done], 2)
    chex.assert_equal_shape([batch.advantage, batch.target_return, batch.done])
    pi_params, values = policy.unroll(params, batch.carry, batch.obs, batch.done)
    log_prob = policy.dist.log_prob(pi_params, batch.action)
    # no closed form (tanh-squashed gSDE): -log pi(a|s) of the taken actions, gradient included (SB3)
    entropy = -log_prob if policy.dist.entropy is None else policy.dist.entropy(pi_params)
    return a2c_objective(
        log_prob,
        values,
        entropy,
        batch.advantage,
        batch.target_return,
        hparams.vf_coef,
        hparams.ent_coef,
        normalize_advantage,
    )
