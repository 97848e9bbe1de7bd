"""Sampling responses from a language model as one `lax.scan` over response positions.

`sample` re-runs the model over the whole fixed-length buffer [B, L] at every response position (full
recompute: any `LanguageModel` works); `sample_cached` runs a model with a decode mode one token at a
time against a KV cache, 5-6x faster here (benchmarks/rlhf_throughput.py), with the same tokens and
log-probabilities for the same keys. `make_sampler` picks. The special tokens come from a `Vocab`
(the digits task's by default; `a2c_jax.rlhf.pretrained.vocab_of(tokenizer)` for a real tokenizer):
its banned tokens (BOS, PAD) are never valid response tokens, so their logits are masked before
sampling and before every log-probability, and a sampling temperature T divides the logits in the same
one place (`response_logits`), so the log-probabilities that enter the KL penalty and the loss are
those of the distribution the tokens were drawn from.

Prompts of different lengths are left-padded to one length P and come with `prompt_mask` [B, P] (True
on real tokens); the model then receives positions that start at 0 on each row's first real token and
a key mask, as `a2c_jax.rlhf.pretrained` models take them, so a padded prompt is continued exactly as
the unpadded one would be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from a2c_jax.core.distributions import categorical_log_prob, categorical_sample
from a2c_jax.rlhf.model import LanguageModel, Params
from a2c_jax.rlhf.task import BOS, EOS, PAD, ends_at


@dataclasses.dataclass(frozen=True)
class Vocab:
    """The special tokens sampling needs: `eos` ends a response, `pad` fills the buffer after it,
    `banned` tokens are never sampled inside a response (BOS, and PAD when it is not also EOS), and
    `stops` end a response as EOS does (stop tokens; kept in the response, as EOS is)."""

    eos: int
    pad: int
    banned: tuple[int, ...]
    stops: tuple[int, ...] = ()

    @property
    def ends(self) -> tuple[int, ...]:
        """Every token that ends a response: EOS, then the stop tokens."""
        return (self.eos, *self.stops)


DIGITS = Vocab(EOS, PAD, (BOS, PAD))
"""The digits task's vocabulary (`a2c_jax.rlhf.task`)."""


class Samples(NamedTuple):
    """tokens int32 [B, L] (prompt, response, PAD); log_prob float32 [B, R] of each response token
    under the sampling policy (0 on padding); mask bool [B, R] (valid: up to and including EOS)."""

    tokens: jax.Array
    log_prob: jax.Array
    mask: jax.Array


def response_logits(logits: jax.Array, temperature: float = 1.0, banned: tuple[int, ...] = DIGITS.banned) -> jax.Array:
    """Logits [..., V] of the response distribution: divided by the sampling temperature, with the
    `banned` tokens ruled out (they never occur inside a response). T = 1 leaves the logits as they are."""
    ids = jnp.arange(logits.shape[-1])
    ruled_out = jnp.isin(ids, jnp.asarray(banned, ids.dtype))
    return jnp.where(ruled_out, -1e9, logits / temperature)


def padded_inputs(prompt_mask: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """For left-padded prompts (mask [B, P]) in a buffer of `length` >= P tokens: (positions int32
    [B, length], counting from 0 at each row's first real token; key mask bool [B, length], True on
    the real prompt tokens and on every response position)."""
    batch, prompt_len = prompt_mask.shape
    mask = jnp.concatenate([prompt_mask.astype(bool), jnp.ones((batch, length - prompt_len), bool)], axis=1)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
    return positions, mask


def lm_apply(
    model: LanguageModel,
    params: Params,
    tokens: jax.Array,
    prompt_mask: jax.Array | None = None,
    outputs: slice = slice(None),
) -> Any:
    """`model.apply(params, tokens)` -> (logits [B, L', V], values [B, L']) of the positions `outputs`
    (a slice whose stop is None or negative; all by default). A model whose class sets
    `slices_outputs = True` (as `PretrainedLM`) computes its final norm and heads on those positions
    alone; any other is sliced. With left-padded prompts (`prompt_mask` [B, P]) the positions and key
    mask of `padded_inputs` are passed too (the model must take them, as `PretrainedLM` does)."""
    assert outputs.step is None and (outputs.stop is None or outputs.stop < 0), outputs
    first = outputs.start or 0
    picks = first > 0 and getattr(model, "slices_outputs", False)
    kwargs = {"first_output": first} if picks else {}
    if prompt_mask is None:
        out = model.apply(params, tokens, **kwargs)
    else:
        positions, mask = padded_inputs(prompt_mask, tokens.shape[1])
        out = model.apply(params, tokens, positions, mask, **kwargs)
    window = slice(None, outputs.stop) if picks else outputs
    return out if window == slice(None) else tuple(x[:, window] for x in out)


def response_outputs(
    model: LanguageModel,
    params: Params,
    tokens: jax.Array,
    prompt_len: int,
    temperature: float = 1.0,
    vocab: Vocab = DIGITS,
    prompt_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One forward pass over full sequences [B, L]: the logits that chose each response token
    [B, R, V] (at `temperature`, banned tokens masked) and the values of the states before them
    [B, R], R = L - prompt_len. `prompt_mask` [B, prompt_len] for left-padded prompts."""
    logits, values = lm_apply(model, params, tokens, prompt_mask, slice(prompt_len - 1, -1))
    return response_logits(logits, temperature, vocab.banned), values


@dataclasses.dataclass(frozen=True)
class Truncation:
    """Which tokens a draw may pick: the `top_k` most likely (0: all), then the smallest set whose
    probability reaches `top_p` (1: all), as `transformers`' TopK and TopP logits warpers. For
    evaluation samples; A2C trains on the untruncated distribution."""

    top_k: int = 0
    top_p: float = 1.0

    def __call__(self, logits: jax.Array) -> jax.Array:
        """logits [..., V] with the excluded tokens at -inf (the most likely token always kept)."""
        if self.top_k > 0:
            kth = jax.lax.top_k(logits, min(self.top_k, logits.shape[-1]))[0][..., -1:]
            logits = jnp.where(logits < kth, -jnp.inf, logits)
        if self.top_p < 1.0:
            ascending = jnp.sort(logits, axis=-1)
            below = jnp.cumsum(jax.nn.softmax(ascending, axis=-1), axis=-1) <= 1.0 - self.top_p
            below = below.at[..., -1].set(False)
            threshold = jnp.min(jnp.where(below, jnp.inf, ascending), axis=-1, keepdims=True)
            logits = jnp.where(logits < threshold, -jnp.inf, logits)
        return logits


FULL = Truncation()
"""No truncation: draws from the whole distribution."""


def next_token(
    key: jax.Array, logits: jax.Array, done: jax.Array, vocab: Vocab, truncation: Truncation = FULL
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One response position of every row: a token drawn from logits [B, V] (`truncation` applied to
    the draw; PAD for rows already done), its log-probability under the untruncated logits (0 for
    those rows), whether it is valid, and the rows done after it (EOS or a stop token drawn).
    -> (token [B], log_prob [B], valid [B], done [B])."""
    token = categorical_sample(key, logits if truncation == FULL else truncation(logits))
    valid = ~done
    log_prob = jnp.where(valid, categorical_log_prob(logits, token), 0.0)
    token = jnp.where(valid, token, vocab.pad)
    return token, log_prob, valid, done | ends_response(token, vocab)


def ends_response(tokens: jax.Array, vocab: Vocab) -> jax.Array:
    """Whether each token (any shape) ends a response: EOS or one of `vocab.stops` (bool, same shape)."""
    return ends_at(tokens, vocab.ends)


def sample(
    model: LanguageModel,
    params: Params,
    prompts: jax.Array,
    key: jax.Array,
    response_len: int,
    temperature: float = 1.0,
    vocab: Vocab = DIGITS,
    prompt_mask: jax.Array | None = None,
    truncation: Truncation = FULL,
) -> Samples:
    """Sample one response per prompt [B, P] (ancestral sampling at `temperature`, drawn within
    `truncation`; `prompt_mask` [B, P] for left-padded prompts).

    Tokens after the first EOS (or stop token) are PAD; a response without one stops at
    `response_len` tokens.
    """
    batch, prompt_len = prompts.shape
    tokens = jnp.concatenate([prompts, jnp.full((batch, response_len), vocab.pad, jnp.int32)], axis=1)

    def step(
        carry: tuple[jax.Array, jax.Array], inputs: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        tokens, done = carry
        t, step_key = inputs
        logits, _ = lm_apply(model, params, tokens, prompt_mask)
        logits = jax.lax.dynamic_index_in_dim(logits, prompt_len + t - 1, axis=1, keepdims=False)
        token, log_prob, valid, done = next_token(
            step_key, response_logits(logits, temperature, vocab.banned), done, vocab, truncation
        )
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, token[:, None], prompt_len + t, axis=1)
        return (tokens, done), (log_prob, valid)

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
    vocab: Vocab = DIGITS,
    prompt_mask: jax.Array | None = None,
    truncation: Truncation = FULL,
) -> Samples:
    """`sample` with a KV cache: `decoder` is the model in decode mode (one token per call, e.g.
    `CausalTransformer(..., decode=True)`), run over the L - 1 positions once each instead of the
    whole buffer at every response position. A decoder whose class sets `prefill = True` (takes
    several tokens per call, as `PretrainedLM`) reads the prompt in one call. Same keys, same tokens
    and log-probabilities as `sample` (up to float rounding). With `prompt_mask` each call also gets
    its tokens' positions and the key mask of the whole buffer."""
    batch, prompt_len = prompts.shape
    length = prompt_len + response_len
    full = jnp.zeros((batch, length), jnp.int32)
    cache = jax.tree.map(jnp.zeros_like, jax.eval_shape(decoder.init, key, full)["cache"])
    variables = {k: v for k, v in params.items() if k != "cache"}
    positions, key_mask = padded_inputs(prompt_mask, length) if prompt_mask is not None else (None, None)

    def run(cache: Params, tokens: jax.Array, position: jax.Array) -> tuple[Params, jax.Array]:
        """tokens and positions [B, n] into the cache; (cache, logits [B, n, V])."""
        args = (tokens,) if key_mask is None else (tokens, position, key_mask)
        (logits, _), mutated = decoder.apply({**variables, "cache": cache}, *args, mutable=["cache"])
        return mutated["cache"], logits

    def feed(cache: Params, token: jax.Array, position: jax.Array) -> tuple[Params, jax.Array]:
        cache, logits = run(cache, token[:, None], position[:, None])
        return cache, response_logits(logits[:, 0], temperature, vocab.banned)

    # the position of buffer index i (only read with a prompt mask)
    index_position = positions if positions is not None else jnp.broadcast_to(jnp.arange(length), (batch, length))
    if prompt_len > 1 and getattr(decoder, "prefill", False):  # all but the prompt's last token at once
        cache, _ = run(cache, prompts[:, :-1], index_position[:, : prompt_len - 1])
    else:  # a decoder that takes one token per call
        feeds = (prompts[:, :-1].T, index_position[:, : prompt_len - 1].T)
        cache, _ = jax.lax.scan(lambda c, x: (feed(c, *x)[0], None), cache, feeds)

    def step(
        carry: tuple[Params, jax.Array, jax.Array], inputs: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[Params, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]:
        cache, previous, done = carry
        step_key, position = inputs
        cache, logits = feed(cache, previous, position)
        token, log_prob, valid, done = next_token(step_key, logits, done, vocab, truncation)
        return (cache, token, done), (token, log_prob, valid)

    start = (cache, prompts[:, -1], jnp.zeros(batch, bool))
    steps = (jax.random.split(key, response_len), index_position[:, prompt_len - 1 : -1].T)
    _, (response, log_prob, valid) = jax.lax.scan(step, start, steps)
    return Samples(jnp.concatenate([prompts, response.T], axis=1), log_prob.T, valid.T)


Sampler = Callable[..., Samples]
"""`sampler(params, prompts, key, response_len, prompt_mask=None) -> Samples`."""


def make_sampler(
    model: LanguageModel,
    kv_cache: bool = True,
    temperature: float = 1.0,
    vocab: Vocab = DIGITS,
    truncation: Truncation = FULL,
) -> Sampler:
    """`sampler(params, prompts, key, response_len, prompt_mask=None) -> Samples` for `model` at
    `temperature` with `vocab`'s special tokens, drawing within `truncation` (top-k / top-p): KV-cached
    when asked and the model has a decode mode (a `decode` field, as `CausalTransformer` and
    `PretrainedLM`), else full recompute."""
    if kv_cache and "decode" in getattr(model, "__dataclass_fields__", {}):
        decoder = model.clone(decode=True)  # type: ignore[attr-defined]

        def cached(
            params: Params, prompts: jax.Array, key: jax.Array, length: int, prompt_mask: jax.Array | None = None
        ) -> Samples:
            return sample_cached(decoder, params, prompts, key, length, temperature, vocab, prompt_mask, truncation)

        return cached

    def full(
        params: Params, prompts: jax.Array, key: jax.Array, length: int, prompt_mask: jax.Array | None = None
    ) -> Samples:
        return sample(model, params, prompts, key, length, temperature, vocab, prompt_mask, truncation)

    return full
