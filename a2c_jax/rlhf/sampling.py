"""Sampling responses from a language model as one `lax.scan` over response positions.

`sample` re-runs the model over the whole fixed-length buffer [B, L] at every response position (full
recompute: any `LanguageModel` works); `sample_cached` runs a model with a decode mode one token at a
time against a KV cache, 5-6x faster here (benchmarks/rlhf_throughput.py), with the same tokens and
log-probabilities for the same keys. `make_sampler` picks. BOS and PAD are never valid response
tokens, so their logits are masked before sampling and before every log-probability, and a sampling
temperature T divides the logits in the same one place (`response_logits`), so the log-probabilities
that enter the KL penalty and the loss are those of the distribution the tokens were drawn from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from a2c_jax.core.distributions import categorical_log_prob, categorical_sample
from a2c_jax.rlhf.model import LanguageModel, Params
from a2c_jax.rlhf.task import BOS, EOS, PAD


class Samples(NamedTuple):
    """tokens int32 [B, L] (prompt, response, PAD); log_prob float32 [B, R] of each response token
    under the sampling policy (0 on padding); mask bool [B, R] (valid: up to and including EOS)."""

    tokens: jax.Array
    log_prob: jax.Array
    mask: jax.Array


def response_logits(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
    """Logits [..., V] of the response distribution: divided by the sampling temperature, with BOS and
    PAD ruled out (they never occur inside a response). T = 1 leaves the logits as they are."""
    ids = jnp.arange(logits.shape[-1])
    return jnp.where((ids == BOS) | (ids == PAD), -1e9, logits / temperature)


def response_outputs(
    model: LanguageModel, params: Params, tokens: jax.Array, prompt_len: int, temperature: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """One forward pass over full sequences [B, L]: the logits that chose each response token
    [B, R, V] (at `temperature`, BOS/PAD masked) and the values of the states before them [B, R],
    R = L - prompt_len."""
    logits, values = model.apply(params, tokens)
    return response_logits(logits[:, prompt_len - 1 : -1], temperature), values[:, prompt_len - 1 : -1]


def sample(
    model: LanguageModel,
    params: Params,
    prompts: jax.Array,
    key: jax.Array,
    response_len: int,
    temperature: float = 1.0,
) -> Samples:
    """Sample one response per prompt [B, P] (ancestral sampling at `temperature`).

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
        logits = jax.lax.dynamic_index_in_dim(logits, prompt_len + t - 1, axis=1, keepdims=False)
        logits = response_logits(logits, temperature)
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


def sample_cached(
    decoder: LanguageModel,
    params: Params,
    prompts: jax.Array,
    key: jax.Array,
    response_len: int,
    temperature: float = 1.0,
) -> Samples:
    """`sample` with a KV cache: `decoder` is the model in decode mode (one token per call, e.g.
    `CausalTransformer(..., decode=True)`), run over the L - 1 positions once each instead of the
    whole buffer at every response position. Same keys, same tokens and log-probabilities as `sample`
    (up to float rounding)."""
    batch, prompt_len = prompts.shape
    full = jnp.zeros((batch, prompt_len + response_len), jnp.int32)
    cache = jax.tree.map(jnp.zeros_like, jax.eval_shape(decoder.init, key, full)["cache"])
    variables = {k: v for k, v in params.items() if k != "cache"}

    def feed(cache: Params, token: jax.Array) -> tuple[Params, jax.Array]:
        (logits, _), mutated = decoder.apply({**variables, "cache": cache}, token[:, None], mutable=["cache"])
        return mutated["cache"], response_logits(logits[:, 0], temperature)

    cache, _ = jax.lax.scan(lambda c, tok: (feed(c, tok)[0], None), cache, prompts[:, :-1].T)

    def step(
        carry: tuple[Params, jax.Array, jax.Array], step_key: jax.Array
    ) -> tuple[tuple[Params, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]:
        cache, previous, done = carry
        cache, logits = feed(cache, previous)
        token = categorical_sample(step_key, logits)
        valid = ~done
        log_prob = jnp.where(valid, categorical_log_prob(logits, token), 0.0)
        token = jnp.where(valid, token, PAD)
        return (cache, token, done | (token == EOS)), (token, log_prob, valid)

    start = (cache, prompts[:, -1], jnp.zeros(batch, bool))
    _, (response, log_prob, valid) = jax.lax.scan(step, start, jax.random.split(key, response_len))
    return Samples(jnp.concatenate([prompts, response.T], axis=1), log_prob.T, valid.T)


Sampler = Callable[[Params, jax.Array, jax.Array, int], Samples]


def make_sampler(model: LanguageModel, kv_cache: bool = True, temperature: float = 1.0) -> Sampler:
    """`sampler(params, prompts, key, response_len) -> Samples` for `model` at `temperature`: KV-cached
    when asked and the model has a decode mode (a `decode` field, as `CausalTransformer`), else full
    recompute."""
    if kv_cache and "decode" in getattr(model, "__dataclass_fields__", {}):
        decoder = model.clone(decode=True)  # type: ignore[attr-defined]
        return lambda params, prompts, key, length: sample_cached(decoder, params, prompts, key, length, temperature)
    return lambda params, prompts, key, length: sample(model, params, prompts, key, length, temperature)
