"""Token-level A2C for RLHF: a policy language model trained against a reward model with a KL
penalty to a frozen reference, from the core's GAE, distributions, A2C objective and optax chain.

Modules: task (vocabulary, prompts, gold reward), model (the `LanguageModel` protocol and a causal
transformer), pretrained (Hugging Face GPT-2 and Llama models as flax modules), hf (their directories
loaded and exported), data (text prompts and preference pairs), rewards (a Python function of the
text as the reward), sampling (scan-based sampling, full recompute or KV cache, top-k / top-p),
objective (per-token rewards, token GAE, KL estimators, the loss), train (the compiled stages), stages
(the supervised stages, cached), sharding (an update over a data x fsdp device mesh), lora (LoRA
adapters), imported (a run's `Inputs` from either source: the digits task or a Hugging Face model,
reward and prompts), run (the host side of `a2c-jax rlhf`). Public names load on first use, like the package's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from a2c_jax._lazy import lazy_exports

if TYPE_CHECKING:
    from a2c_jax.rlhf.config import RLHFConfig
    from a2c_jax.rlhf.data import Prompts, load_prompts
    from a2c_jax.rlhf.hf import Pretrained, load_pretrained, save_pretrained, vocab_of
    from a2c_jax.rlhf.model import CausalTransformer, LanguageModel
    from a2c_jax.rlhf.objective import kl_estimates, rlhf_loss, token_advantages, token_rewards
    from a2c_jax.rlhf.pretrained import ModelConfig, PretrainedLM
    from a2c_jax.rlhf.run import run_rlhf
    from a2c_jax.rlhf.sampling import Vocab, make_sampler, sample, sample_cached
    from a2c_jax.rlhf.train import Frozen, Prompting, a2c_step, digits, from_prompts

_LAZY: dict[str, str] = {
    "RLHFConfig": "a2c_jax.rlhf.config",
    "CausalTransformer": "a2c_jax.rlhf.model",
    "LanguageModel": "a2c_jax.rlhf.model",
    "kl_estimates": "a2c_jax.rlhf.objective",
    "rlhf_loss": "a2c_jax.rlhf.objective",
    "token_advantages": "a2c_jax.rlhf.objective",
    "token_rewards": "a2c_jax.rlhf.objective",
    "ModelConfig": "a2c_jax.rlhf.pretrained",
    "Pretrained": "a2c_jax.rlhf.hf",
    "PretrainedLM": "a2c_jax.rlhf.pretrained",
    "load_pretrained": "a2c_jax.rlhf.hf",
    "save_pretrained": "a2c_jax.rlhf.hf",
    "run_rlhf": "a2c_jax.rlhf.run",
    "make_sampler": "a2c_jax.rlhf.sampling",
    "sample": "a2c_jax.rlhf.sampling",
    "sample_cached": "a2c_jax.rlhf.sampling",
    "a2c_step": "a2c_jax.rlhf.train",
    "Frozen": "a2c_jax.rlhf.train",
    "Prompting": "a2c_jax.rlhf.train",
    "digits": "a2c_jax.rlhf.train",
    "from_prompts": "a2c_jax.rlhf.train",
    "Vocab": "a2c_jax.rlhf.sampling",
    "Prompts": "a2c_jax.rlhf.data",
    "load_prompts": "a2c_jax.rlhf.data",
    "vocab_of": "a2c_jax.rlhf.hf",
}

__all__ = [
    "CausalTransformer",
    "Frozen",
    "LanguageModel",
    "ModelConfig",
    "Pretrained",
    "PretrainedLM",
    "Prompting",
    "Prompts",
    "RLHFConfig",
    "Vocab",
    "a2c_step",
    "digits",
    "from_prompts",
    "kl_estimates",
    "load_pretrained",
    "load_prompts",
    "make_sampler",
    "rlhf_loss",
    "run_rlhf",
    "sample",
    "sample_cached",
    "save_pretrained",
    "token_advantages",
    "token_rewards",
    "vocab_of",
]


__getattr__, __dir__ = lazy_exports("a2c_jax.rlhf", _LAZY, globals())
