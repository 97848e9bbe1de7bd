"""Sampling responses from a language model as one `lax.scan` over response positions.

Every step re-runs the model over the whole fixed-length buffer [B, L] (full recompute: one program
shape, and at these lengths it measured faster on a CPU than a KV cache would need to be to pay for
its bookkeeping; see the README). BOS and PAD are never valid response tokens, so their logits are
masked before sampling and before every log-probability, keeping both consistent.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from a2c_jax.distributions import categorical_log_prob, categorical_sample
from a2c_jax.rlhf.model import LanguageModel, Params
from a2c_jax.rlhf.task import BOS, EOS, PAD


class Samples(NamedTuple):
    """tokens int32 [B, L] (prompt, response, PAD); log_prob float32 [B, R] of each response token
    under the sampling policy (0 on padding); mask bool [B, R] (valid: up to and including EOS)."""

    tokens: jax.Array
    log_prob: jax.Array
    mask: jax.Array


def response_logits(logits: jax.Array) -> jax.Array:
    """Logits [..., V] with BOS and PAD ruled out (they never occur inside a response)."""
    ids = jnp.arange(logits.shape[-1])
    return jnp.where((ids == BOS) | (ids == PAD), -1e9, logits)


def response_outputs(
    model: LanguageModel, params: Params, tokens: jax.Array, prompt_len: int
) -> tuple[jax.Array, jax.Array]:
    """One forward pass over full sequences [B, L]: the logits that chose each response token
    [B, R, V] (BOS/PAD masked) and the values of the states before them [B, R], R = L - prompt_len."""
    logits, values = model.apply(params, tokens)
    return response_logits(logits[:, prompt_len - 1 : -1]), values[:, prompt_len - 1 : -1]


def sample(model: LanguageModel, params: Params, prompts: jax.Array, key: jax.Array, response_len: int) -> Samples:
    """Sample one response per prompt [B, P] (ancestral sampling at temperature 1).

    Tokens after the first EOS are PAD; a response without EOS stops at `response_len` tokens.
    """
    batch, prompt_len = prompts.shape
    tokens = jnp.concatenate([prompts, jnp.full((batch, response_len), PAD, jnp.int32)], axis=1)

    def step(
        carry: tuple[jax.Array, jax.Array], inputs: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        tokens, done = carry
        t, step_key = inputs
        logits, _ = model.apply(params, tokens)
        logits = response_logits(jax.lax.dynamic_index_in_dim(logits, prompt_len + t - 1, axis=1, keepdims=False))
        token = categorical_sample(step_key, logits)
        valid = ~done
        log_prob = jnp.where(valid, categorical_log_prob(logits, token), 0.0)
        token = jnp.where(valid, token, PAD)
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, token[:, None], prompt_len + t, axis=1)
        return (tokens, done | (token == EOS)), (log_prob, valid)

    steps = (jnp.arange(response_len), jax.random.split(key, response_len))
    (tokens, _), (log_prob, valid) = jax.lax.scan(step, (tokens, jnp.zeros(batch, bool)), steps)
    return Samples(tokens, log_prob.T, valid.T)


def last_valid(values: jax.Array, mask: jax.Array) -> jax.Array:
    """values [B, R] read at each row's last valid position (mask [B, R], at least one valid): [B]."""
    last = jnp.sum(mask, axis=1) - 1
    return jnp.take_along_axis(values, last[:, None], axis=1)[:, 0]
