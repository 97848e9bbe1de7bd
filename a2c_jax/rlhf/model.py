"""The language-model protocol, and a small causal transformer that implements it.

A language model here is any flax module whose `apply(variables, tokens)` maps int32 tokens [B, L]
to `(logits [B, L, V], values [B, L])`: position i's logits predict token i + 1 and its value
estimates the return from the state "tokens 0..i". The policy uses both outputs, the frozen
reference only the logits, the reward model only the scalar head (read at the last valid token).
Plug in your own module by passing it wherever a `LanguageModel` is expected.
"""

from __future__ import annotations

from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = Any


class LanguageModel(Protocol):
    """What the RLHF code needs of a model (flax's Module has both): `init(key, tokens) -> variables`
    and a pure `apply(variables, tokens) -> (logits [B, L, V], values [B, L])`."""

    def init(self, *args: Any, **kwargs: Any) -> Any: ...

    def apply(self, *args: Any, **kwargs: Any) -> Any: ...


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention, then a 4x GELU MLP; residuals."""

    width: int
    heads: int
    decode: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        h = nn.LayerNorm()(x)
        attention = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.width, decode=self.decode)
        x = x + attention(h, h, mask=mask)
        h = nn.LayerNorm()(x)
        h = nn.Dense(4 * self.width)(h)
        return x + nn.Dense(self.width)(nn.gelu(h))


class CausalTransformer(nn.Module):
    """A GPT-style decoder: token + learned position embeddings, `layers` causal blocks, a final
    LayerNorm, a language-model head [V] and a scalar head (value or reward), both per position.

    tokens int32 [B, L] (L <= max_len) -> (logits float32 [B, L, vocab_size], scalar [B, L]).

    With `decode=True` the same parameters run one token per call ([B, 1] in, [B, 1, V] out) against
    a KV cache (flax's "cache" collection, made by `init` on a full-length [B, L] input).
    """

    vocab_size: int
    max_len: int
    width: int = 64
    layers: int = 2
    heads: int = 4
    decode: bool = False

    @nn.compact
    def __call__(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        length = tokens.shape[-1]
        if length > self.max_len:  # an embedding lookup past the table would clamp silently
            raise ValueError(f"sequence length {length} exceeds max_len={self.max_len}")
        positions = jnp.arange(length)
        mask: jax.Array | None = nn.make_causal_mask(tokens)
        if self.decode:  # the cache's attention masks by position itself
            initialized = self.has_variable("cache", "position")
            position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
            if initialized:
                positions, mask = position.value[None], None
                position.value = position.value + 1
        x = nn.Embed(self.vocab_size, self.width)(tokens)
        x = x + nn.Embed(self.max_len, self.width)(positions)[None]
        for _ in range(self.layers):
            x = Block(self.width, self.heads, self.decode)(x, mask)
        x = nn.LayerNorm()(x)
        logits = nn.Dense(self.vocab_size, name="lm_head")(x)
        scalar = nn.Dense(1, kernel_init=nn.initializers.zeros, name="scalar_head")(x)[..., 0]
        return logits, scalar
