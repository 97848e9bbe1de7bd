"""Hugging Face causal language models in JAX: the GPT-2 and Llama families as flax modules that
implement the `LanguageModel` protocol (their directories are read and written by `a2c_jax.rlhf.hf`).

`a2c_jax.rlhf.hf.load_pretrained(path)` reads `config.json` and the weights (`model.safetensors`, or the shards a
`model.safetensors.index.json` lists) with `safetensors`, and the tokenizer with
`transformers.AutoTokenizer` (extra `hf`). The module is `GPT2` (model_type "gpt2") or `Llama`
("llama", "qwen2", "mistral": RMSNorm, rotary positions, grouped-query attention, SwiGLU).

Both map int32 tokens [B, L] to `(logits [B, L, V], values [B, L])`, the values from a scalar head on
the final hidden state (zero-initialised, so a freshly loaded policy predicts 0; `save_pretrained`
writes it beside the weights as `value_head.safetensors`, which `transformers` ignores). Left-padded
batches pass `positions` [B, L] and the key mask `mask` [B, L] (True on real tokens), as
`transformers` takes `position_ids` and `attention_mask`.

With `decode=True` the same parameters run a few tokens per call against a KV cache (flax's "cache"
collection, made by `init` on a full-length [B, L] input): positions continue from the cache's count
unless given, and `mask` then covers the whole buffer [B, max_len].
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from a2c_jax.config import ConfigError

Params = Any
NEG = -1e9  # added to masked attention scores (finite: a row with nothing to attend to stays finite)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The architecture of a causal LM, read from a `config.json` (`from_hf`) and written back (`to_hf`).

    family "gpt2" (learned positions, LayerNorm, GELU MLP, fused QKV) or "llama" (rotary positions,
    RMSNorm, SwiGLU, grouped-query attention); `hf` keeps the original fields for the export."""

    family: str
    vocab_size: int
    width: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    mlp_width: int
    max_len: int
    norm_eps: float
    tie_embeddings: bool
    activation: str = "gelu_new"
    rope_theta: float = 10000.0
    qkv_bias: bool = False
    hf: tuple[tuple[str, Any], ...] = ()

    @staticmethod
    def from_hf(fields: dict[str, Any], where: str = "config.json") -> ModelConfig:
        """The config of a `transformers` config.json; ConfigError for an architecture it cannot run."""
        kind = fields.get("model_type")
        frozen = tuple(sorted((k, json.dumps(v)) for k, v in fields.items()))
        if kind == "gpt2":
            width = int(fields["n_embd"])
            heads = int(fields["n_head"])
            for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
                if fields.get(flag):
                    raise ConfigError(f"{where}: {flag}=true is not supported (allowed: false)")
            if fields.get("scale_attn_weights", True) is False:
                raise ConfigError(f"{where}: scale_attn_weights=false is not supported (allowed: true)")
            activation = fields.get("activation_function", "gelu_new")
            if activation not in ACTIVATIONS:
                raise ConfigError(f"{where}: activation_function={activation!r} (allowed: {sorted(ACTIVATIONS)})")
            return ModelConfig(
                family="gpt2", vocab_size=int(fields["vocab_size"]), width=width, layers=int(fields["n_layer"]),
                heads=heads, kv_heads=heads, head_dim=width // heads,
                mlp_width=int(fields.get("n_inner") or 4 * width), max_len=int(fields["n_positions"]),
                norm_eps=float(fields.get("layer_norm_epsilon", 1e-5)),
                tie_embeddings=bool(fields.get("tie_word_embeddings", True)), activation=activation, hf=frozen,
            )  # fmt: skip
        if kind in ("llama", "qwen2", "mistral"):
            width = int(fields["hidden_size"])
            heads = int(fields["num_attention_heads"])
            rope = fields.get("rope_parameters") or fields.get("rope_scaling") or {}
            if rope.get("rope_type", rope.get("type", "default")) != "default":
                raise ConfigError(f"{where}: rope_type={rope.get('rope_type')!r} is not supported (allowed: 'default')")
            if fields.get("mlp_bias"):
                raise ConfigError(f"{where}: mlp_bias=true is not supported (allowed: false)")
            if fields.get("hidden_act", "silu") != "silu":
                raise ConfigError(f"{where}: hidden_act={fields['hidden_act']!r} is not supported (allowed: 'silu')")
            window = fields.get("sliding_window") if fields.get("use_sliding_window", kind == "mistral") else None
            max_len = int(fields.get("max_position_embeddings", 2048))
            if window is not None and int(window) < max_len:
                max_len = int(window)  # within the window, sliding-window attention is full attention
            return ModelConfig(
                family="llama", vocab_size=int(fields["vocab_size"]), width=width,
                layers=int(fields["num_hidden_layers"]), heads=heads,
                kv_heads=int(fields.get("num_key_value_heads") or heads),
                head_dim=int(fields.get("head_dim") or width // heads), mlp_width=int(fields["intermediate_size"]),
                max_len=max_len, norm_eps=float(fields.get("rms_norm_eps", 1e-6)),
                tie_embeddings=bool(fields.get("tie_word_embeddings", False)),
                rope_theta=float(rope.get("rope_theta", fields.get("rope_theta", 10000.0))),
                qkv_bias=kind == "qwen2" or bool(fields.get("attention_bias", False)), hf=frozen,
            )  # fmt: skip
        raise ConfigError(
            f"{where}: model_type={kind!r} is not supported (allowed: 'gpt2', 'llama', 'qwen2', 'mistral')"
        )

    def to_hf(self) -> dict[str, Any]:
        """The config.json fields this config was read from."""
        return {k: json.loads(v) for k, v in self.hf}


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "relu": nn.relu,
    "silu": nn.silu,
}


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, in float32 (Llama's normalisation)."""

    eps: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        weight = self.param("weight", nn.initializers.ones, (x.shape[-1],))
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return weight * normed.astype(x.dtype)


def rotary(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding (Llama's half-split form): x [B, L, H, D], positions [B, L]."""
    dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, L, D/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    half = dim // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * jnp.cos(angles) + rotated * jnp.sin(angles)


class Attention(nn.Module):
    """Causal multi-head (grouped-query when kv_heads < heads) self-attention with an optional KV
    cache; GPT-2's fused `c_attn`/`c_proj` or Llama's `q/k/v/o_proj` parameter layout."""

    config: ModelConfig
    decode: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array, allowed: jax.Array) -> jax.Array:
        """x [B, L, width], positions [B, L], allowed bool [B, L, K] (K keys: L, or the cache length)."""
        c = self.config
        batch, length, _ = x.shape
        if c.family == "gpt2":
            qkv = nn.Dense(3 * c.width, name="c_attn")(x)
            q, k, v = (t.reshape(batch, length, c.heads, c.head_dim) for t in jnp.split(qkv, 3, axis=-1))
        else:
            q = nn.Dense(c.heads * c.head_dim, use_bias=c.qkv_bias, name="q_proj")(x)
            k = nn.Dense(c.kv_heads * c.head_dim, use_bias=c.qkv_bias, name="k_proj")(x)
            v = nn.Dense(c.kv_heads * c.head_dim, use_bias=c.qkv_bias, name="v_proj")(x)
            q = rotary(q.reshape(batch, length, c.heads, c.head_dim), positions, c.rope_theta)
            k = rotary(k.reshape(batch, length, c.kv_heads, c.head_dim), positions, c.rope_theta)
            v = v.reshape(batch, length, c.kv_heads, c.head_dim)
        # keys as [B, H, D, K] and values as [B, H, K, D]: the layouts the two batched matmuls read, so a
        # decode step reads the cache as it is stored instead of transposing all of it
        keys, values = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)
        if self.decode:
            keys, values = self._cached(keys, values)
        if c.kv_heads < c.heads:  # head h reads kv head h // (heads / kv_heads), as transformers' repeat_kv
            keys, values = (jnp.repeat(t, c.heads // c.kv_heads, axis=1) for t in (keys, values))
        scores = jnp.einsum("bqhd,bhdk->bhqk", q, keys) / math.sqrt(c.head_dim)
        scores = jnp.where(allowed[:, None], scores.astype(jnp.float32), NEG)
        out = jnp.einsum("bhqk,bhkd->bqhd", jax.nn.softmax(scores, axis=-1).astype(values.dtype), values)
        out = out.reshape(batch, length, c.heads * c.head_dim)
        return nn.Dense(c.width, name="c_proj" if c.family == "gpt2" else "o_proj", use_bias=c.family == "gpt2")(out)

    def _cached(self, k: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Write this call's keys [B, H, D, L] and values [B, H, L, D] at the cache's index; return the
        whole cache, keys [B, H, D, K] and values [B, H, K, D]."""
        initialized = self.has_variable("cache", "key")
        key = self.variable("cache", "key", jnp.zeros, k.shape, k.dtype)
        value = self.variable("cache", "value", jnp.zeros, v.shape, v.dtype)
        index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
        if not initialized:  # `init` on the full buffer sizes the cache
            return k, v
        key.value = jax.lax.dynamic_update_slice(key.value, k, (0, 0, 0, index.value))
        value.value = jax.lax.dynamic_update_slice(value.value, v, (0, 0, index.value, 0))
        index.value = index.value + v.shape[2]
        return key.value, value.value


class Block(nn.Module):
    """One decoder layer: pre-norm attention and MLP with residuals, in either family's layout."""

    config: ModelConfig
    decode: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array, allowed: jax.Array) -> jax.Array:
        c = self.config
        if c.family == "gpt2":
            h = nn.LayerNorm(epsilon=c.norm_eps, name="ln_1")(x)
            x = x + Attention(c, self.decode, name="attn")(h, positions, allowed)
            h = nn.LayerNorm(epsilon=c.norm_eps, name="ln_2")(x)
            h = ACTIVATIONS[c.activation](nn.Dense(c.mlp_width, name="c_fc")(h))
            return x + nn.Dense(c.width, name="c_proj")(h)
        h = RMSNorm(c.norm_eps, name="input_layernorm")(x)
        x = x + Attention(c, self.decode, name="self_attn")(h, positions, allowed)
        h = RMSNorm(c.norm_eps, name="post_attention_layernorm")(x)
        gate = nn.Dense(c.mlp_width, use_bias=False, name="gate_proj")(h)
        up = nn.Dense(c.mlp_width, use_bias=False, name="up_proj")(h)
        return x + nn.Dense(c.width, use_bias=False, name="down_proj")(nn.silu(gate) * up)


class PretrainedLM(nn.Module):
    """A GPT-2- or Llama-family causal LM with a scalar head; see the module docstring.

    tokens int32 [B, L] -> (logits float32 [B, L, vocab_size], values float32 [B, L]).
    positions int32 [B, L] (default 0..L-1, or continuing the cache); mask bool [B, K] on the keys
    (default all True; K = L, or the cache length in decode mode). `first_output` F (a Python int):
    the outputs of positions F.. only, [B, L - F, vocab_size] and [B, L - F]; the final norm and the
    heads run on those positions alone (an RLHF update reads the response positions, and the LM head
    is a large share of a position's FLOPs).
    """

    config: ModelConfig
    decode: bool = False
    prefill: ClassVar[bool] = True
    """decode mode takes several tokens per call (a prompt at once)"""
    slices_outputs: ClassVar[bool] = True
    """`__call__` takes `first_output` (see `a2c_jax.rlhf.sampling.lm_apply`)"""

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        mask: jax.Array | None = None,
        first_output: int = 0,
    ) -> tuple[jax.Array, jax.Array]:
        c = self.config
        batch, length = tokens.shape
        if length > c.max_len:
            raise ValueError(f"sequence length {length} exceeds the model's context of {c.max_len} tokens")
        start: jax.Array | int = 0
        cached = False  # a decode call after `init`: the keys are the cache's whole buffer
        if self.decode:
            cached = self.has_variable("cache", "count")
            count = self.variable("cache", "count", lambda: jnp.zeros((), jnp.int32))
            if cached:  # the cache's count of tokens seen is this call's first buffer index
                start = count.value
                count.value = count.value + length
        keys = self._cache_length() if cached else length
        if positions is None:
            positions = jnp.broadcast_to(start + jnp.arange(length, dtype=jnp.int32), (batch, length))
        allowed = self._allowed(batch, length, keys, start, mask)
        if c.family == "gpt2":
            embed = nn.Embed(c.vocab_size, c.width, name="wte")
            x = embed(tokens) + nn.Embed(c.max_len, c.width, name="wpe")(positions)
        else:
            embed = nn.Embed(c.vocab_size, c.width, name="embed_tokens")
            x = embed(tokens)
        for i in range(c.layers):
            x = Block(c, self.decode, name=f"h_{i}" if c.family == "gpt2" else f"layers_{i}")(x, positions, allowed)
        x = x[:, first_output:]
        if c.family == "gpt2":
            x = nn.LayerNorm(epsilon=c.norm_eps, name="ln_f")(x)
        else:
            x = RMSNorm(c.norm_eps, name="norm")(x)
        logits = embed.attend(x) if c.tie_embeddings else nn.Dense(c.vocab_size, use_bias=False, name="lm_head")(x)
        values = nn.Dense(1, kernel_init=nn.initializers.zeros, name="scalar_head")(x)[..., 0]
        return logits.astype(jnp.float32), values.astype(jnp.float32)

    @staticmethod
    def _allowed(batch: int, length: int, keys: int, start: jax.Array | int, mask: jax.Array | None) -> jax.Array:
        """bool [B, L, K]: query i (at buffer index start + i) may read key j when j <= start + i and
        the key is a real token."""
        query_index = start + jnp.arange(length)
        allowed = jnp.arange(keys)[None, :] <= query_index[:, None]
        if mask is None:
            return jnp.broadcast_to(allowed, (batch, length, keys))
        if mask.shape != (batch, keys):
            raise ValueError(f"mask has shape {mask.shape}; expected {(batch, keys)} (batch, keys)")
        return allowed[None] & mask[:, None, :].astype(bool)

    def _cache_length(self) -> int:
        """The cache's key length (the buffer `init` was given)."""
        name = "h_0" if self.config.family == "gpt2" else "layers_0"
        attn = "attn" if self.config.family == "gpt2" else "self_attn"
        return int(self.variables["cache"][name][attn]["value"].shape[2])


def build(config: ModelConfig, decode: bool = False) -> PretrainedLM:
    """The flax module of `config`."""
    return PretrainedLM(config, decode)
