"""The synthetic alignment task: digit prompts, digit responses and a programmatic gold reward.

Vocabulary: the digits 0-9 are tokens 0-9, then BOS, EOS and PAD. A prompt is BOS followed by
`prompt_digits` random digits; a response is at most `response_len` tokens, digits closed by EOS,
then PAD. The gold reward asks the response's digit sum to equal the prompt's digit sum, briefly:

    r*(prompt, response) = -|sum(response digits) - sum(prompt digits)| / 4 - 0.05 * length
                           - 1 if the response has no EOS

It is the ground truth for evaluation only; the agent sees only a reward model trained from noisy
preferences between pairs of reference samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from a2c_jax.rlhf.config import TaskSpec

BOS, EOS, PAD = 10, 11, 12
VOCAB_SIZE = 13
SUM_SCALE = 4.0
LENGTH_COST = 0.05
NO_EOS_PENALTY = 1.0


def sample_prompts(key: jax.Array, batch: int, spec: TaskSpec) -> jax.Array:
    """BOS and `prompt_digits` uniform digits: int32 [batch, prompt_len]."""
    digits = jax.random.randint(key, (batch, spec.prompt_digits), 0, 10, jnp.int32)
    return jnp.concatenate([jnp.full((batch, 1), BOS, jnp.int32), digits], axis=1)


def ends_at(tokens: jax.Array, ends: tuple[int, ...] = (EOS,)) -> jax.Array:
    """Whether each token (any shape) is one of `ends` (EOS, and any stop tokens) (bool, same shape)."""
    return jnp.isin(tokens, jnp.asarray(ends, tokens.dtype))


def response_mask(response: jax.Array, ends: tuple[int, ...] = (EOS,), pad: int = PAD) -> jax.Array:
    """Valid tokens of responses [B, R]: everything up to and including the first token of `ends`
    (EOS, and any stop tokens), PAD excluded (unless PAD is EOS, as with GPT-2's tokenizer) (bool [B, R])."""
    is_end = ends_at(response, ends).astype(jnp.int32)
    end_before = jnp.cumsum(is_end, axis=1) - is_end
    return (end_before == 0) & ((response != pad) if pad not in ends else True)


def gold_reward(prompts: jax.Array, responses: jax.Array) -> jax.Array:
    """r*(prompt, response) [B] for prompts [B, P] and responses [B, R] (see the module docstring)."""
    mask = response_mask(responses)
    digits = mask & (responses < 10)
    response_sum = jnp.sum(jnp.where(digits, responses, 0), axis=1)
    prompt_sum = jnp.sum(jnp.where(prompts < 10, prompts, 0), axis=1)
    length = jnp.sum(mask, axis=1)
    has_eos = jnp.any(mask & (responses == EOS), axis=1)
    distance = jnp.abs(response_sum - prompt_sum).astype(jnp.float32)
    return -distance / SUM_SCALE - LENGTH_COST * length - NO_EOS_PENALTY * (1.0 - has_eos)


def reference_corpus(key: jax.Array, batch: int, spec: TaskSpec) -> jax.Array:
    """Plausible but unaligned sequences for the reference model: a prompt, then a uniform number
    0..R of uniform digits, closed by EOS when fewer than R (R digits fill the response with no EOS,
    as a sampled response can), then PAD. int32 [batch, seq_len]."""
    k_prompt, k_len, k_digits = jax.random.split(key, 3)
    prompts = sample_prompts(k_prompt, batch, spec)
    length = jax.random.randint(k_len, (batch, 1), 0, spec.response_len + 1, jnp.int32)
    digits = jax.random.randint(k_digits, (batch, spec.response_len), 0, 10, jnp.int32)
    position = jnp.arange(spec.response_len)[None, :]
    response = jnp.where(position < length, digits, jnp.where(position == length, EOS, PAD))
    return jnp.concatenate([prompts, response], axis=1)


def decode(tokens: jax.Array | list[int]) -> str:
    """Readable text of one sequence: digits, '<s>', '</s>'; padding dropped."""
    names = {BOS: "<s> ", EOS: " </s>", PAD: ""}
    return "".join(names.get(int(t), str(int(t))) for t in tokens)
