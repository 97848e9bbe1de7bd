"""The A2C loss (SB3's form): policy gradient + vf_coef * value MSE - ent_coef * entropy."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from a2c_jax.config import HParams
from a2c_jax.networks import Carry, Params, Policy


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


def explained_variance(pred: jax.Array, target: jax.Array) -> jax.Array:
    """1 - Var(target - pred) / Var(target); NaN-free (0 when Var(target) is 0)."""
    var_t = jnp.var(target)
    return jnp.where(var_t > 0, 1.0 - jnp.var(target - pred) / jnp.where(var_t > 0, var_t, 1.0), 0.0)


def a2c_loss(
    params: Params,
    policy: Policy,
    batch: Batch,
    hparams: HParams,
    normalize_advantage: bool = False,
) -> tuple[jax.Array, LossMetrics]:
    """loss = -mean(A * log pi(a|s)) + vf_coef * mean((R - V(s))^2) - ent_coef * mean(H[pi(.|s)]).

    Means run over all T * N samples. Advantages and target returns are constants (no gradient
    flows through them). The value term is the plain mean squared error, without a 1/2, as in SB3.
    A recurrent policy re-runs the rollout from `batch.carry`, so its gradient flows through time.

    Returns:
        (scalar loss, LossMetrics).
    """
    chex.assert_rank([batch.advantage, batch.target_return, batch.done], 2)
    chex.assert_equal_shape([batch.advantage, batch.target_return, batch.done])
    pi_params, values = policy.unroll(params, batch.carry, batch.obs, batch.done)
    chex.assert_equal_shape([values, batch.advantage])
    advantage = jax.lax.stop_gradient(batch.advantage)
    if normalize_advantage:
        # PyTorch's Tensor.std(), which SB3 uses, is the unbiased (n - 1) estimate
        advantage = (advantage - advantage.mean()) / (advantage.std(ddof=1) + 1e-8)
    target = jax.lax.stop_gradient(batch.target_return)
    log_prob = policy.dist.log_prob(pi_params, batch.action)
    entropy = jnp.mean(policy.dist.entropy(pi_params))
    policy_loss = -jnp.mean(advantage * log_prob)
    value_loss = jnp.mean(jnp.square(target - values))
    loss = policy_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
    metrics = LossMetrics(loss, policy_loss, value_loss, entropy, explained_variance(values, target))
    return loss, metrics
