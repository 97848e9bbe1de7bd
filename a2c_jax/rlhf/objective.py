"""Token-level A2C for RLHF, built from the core's pieces.

A state is the prompt plus the tokens so far, an action the next token. The reward of token t is
-beta * (log pi(y_t|s_t) - log pi_ref(y_t|s_t)), plus the reward model's score on the last valid
token (never on padding). Advantages are the core's `gae`, time-major [R, B], with the end of each
response (EOS, or the last position) as termination; the loss is the core's `a2c_objective` with a
mask over valid tokens and advantages whitened over them. All arrays here are [B, R] unless stated.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from a2c_jax.core.advantages import gae
from a2c_jax.core.distributions import categorical_entropy, categorical_log_prob
from a2c_jax.core.losses import LossMetrics, a2c_objective
from a2c_jax.rlhf.model import LanguageModel, Params
from a2c_jax.rlhf.sampling import response_outputs


class TokenBatch(NamedTuple):
    """One A2C batch of sampled responses: tokens [B, L]; advantage, target_return [B, R]; mask [B, R]."""

    tokens: jax.Array
    advantage: jax.Array
    target_return: jax.Array
    mask: jax.Array


def token_rewards(
    score: jax.Array,
    log_prob: jax.Array,
    ref_log_prob: jax.Array,
    mask: jax.Array,
    beta: jax.Array | float,
    estimator: str = "k1",
) -> jax.Array:
    """-beta * KL_t on every valid token, plus score [B] on the last valid one; 0 on padding.

    KL_t is "k1", log pi - log pi_ref (summed over a response: score - beta * k1, the sequence
    estimate), or "k3", (r - 1) - log r with r = pi_ref / pi (never negative; summed: score - beta * k3).
    """
    if estimator not in ("k1", "k3"):
        raise ValueError(f"estimator={estimator!r}: 'k1' or 'k3'")
    if estimator == "k1":
        kl = jnp.where(mask, log_prob - ref_log_prob, 0.0)
    else:
        log_r = jnp.where(mask, ref_log_prob - log_prob, 0.0)
        kl = jnp.where(mask, jnp.expm1(log_r) - log_r, 0.0)
    last = jax.nn.one_hot(jnp.sum(mask, axis=1) - 1, mask.shape[1], dtype=kl.dtype) * mask
    return -beta * kl + score[:, None] * last


def token_advantages(
    rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: jax.Array | float, gae_lambda: jax.Array | float
) -> tuple[jax.Array, jax.Array]:
    """GAE over tokens with the core's `gae`: (advantages, lambda-returns), both [B, R], 0 on padding.

    A response ends (terminated, no bootstrap) at its last valid token; padding rows are terminated
    with zero reward and value, so nothing after EOS contributes.
    """
    values = jnp.where(mask, values, 0.0)
    next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1)
    terminated = ~jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
    advantages, returns = gae(
        rewards.T, values.T, next_values.T, terminated.T, jnp.zeros_like(terminated.T), gamma, gae_lambda
    )
    return jnp.where(mask, advantages.T, 0.0), jnp.where(mask, returns.T, 0.0)


def kl_estimates(log_prob: jax.Array, ref_log_prob: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-sequence KL(pi || pi_ref) estimates from samples of pi, summed over valid tokens: [B] each.

    k1 = -log r (unbiased, can be negative), k3 = (r - 1) - log r (unbiased, >= 0), r = pi_ref / pi.
    """
    log_r = jnp.where(mask, ref_log_prob - log_prob, 0.0)
    k1 = jnp.sum(-log_r, axis=1)
    k3 = jnp.sum(jnp.where(mask, jnp.expm1(log_r) - log_r, 0.0), axis=1)
    return k1, k3


def token_objective(
    logits: jax.Array,
    values: jax.Array,
    batch: TokenBatch,
    prompt_len: int,
    vf_coef: jax.Array | float,
    ent_coef: jax.Array | float,
    whiten: bool = True,
) -> tuple[jax.Array, LossMetrics]:
    """The core's A2C objective over the valid tokens of `batch`, from the policy's outputs on
    `batch.tokens` (logits [B, R, V] and values [B, R], as `response_outputs` gives them)."""
    actions = batch.tokens[:, prompt_len:]
    return a2c_objective(
        categorical_log_prob(logits, actions),
        values,
        categorical_entropy(logits),
        batch.advantage,
        batch.target_return,
        vf_coef,
        ent_coef,
        normalize_advantage=whiten,
        mask=batch.mask,
    )


def rlhf_loss(
    params: Params,
    model: LanguageModel,
    batch: TokenBatch,
    prompt_len: int,
    vf_coef: jax.Array | float,
    ent_coef: jax.Array | float,
    whiten: bool = True,
) -> tuple[jax.Array, LossMetrics]:
    """`token_objective` after one forward pass of the policy: a function of the parameters."""
    logits, values = response_outputs(model, params, batch.tokens, prompt_len)
    return token_objective(logits, values, batch, prompt_len, vf_coef, ent_coef, whiten)


def adaptive_beta(beta: jax.Array, kl: jax.Array, target: float, horizon: float, batch_size: int) -> jax.Array:
    """The adaptive KL controller of Ziegler et al. (2019): `beta <- beta (1 + clip(KL / target - 1, -0.2,
    0.2) batch_size / horizon)`, so the mean sequence KL drifts toward `target`. All scalars."""
    error = jnp.clip(kl / target - 1.0, -0.2, 0.2)
    return beta * (1.0 + error * batch_size / horizon)
