"""RLHF throughput on a Hugging Face-shaped model: a2c_jax's imported GPT-2 (`a2c_jax.rlhf.hf`) against
the same loop in PyTorch on `transformers`' own GPT2LMHeadModel, for `benchmarks.rlhf_throughput --model`.

Both sides load the same random checkpoint (written here with `save_pretrained`; random weights cost
what trained ones cost). Per A2C update, each side samples `batch` responses of `response` tokens to
prompts of `prompt` tokens with a KV cache (temperature 1, ancestral), reads the frozen reference and
the reward model (the same trunk with a scalar head) on the finished sequences, shapes per-token
KL rewards, runs GAE over tokens and whitens the advantages, and takes one Adam step with global-norm
clipping on the policy and its value head. PyTorch runs eager with its fastest attention (SDPA) and
both its samplers, measured side by side: a hand loop over the model's KV `cache` (the prompt's LM
head on its last position only) with `torch.multinomial` (no argument validation, no per-token host
copies), and `generate`. The update samples with the hand loop.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

SHAPES: dict[str, dict[str, int]] = {
    # GPT-2 small: 124M parameters (12 layers, width 768, 12 heads, vocab 50257), context 256
    "gpt2-small-shaped": {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 256, "vocab_size": 50257},
    # a few-second smoke shape for tests
    "gpt2-tiny": {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "vocab_size": 300},
}


@dataclasses.dataclass(frozen=True)
class Workload:
    """One A2C-RLHF update's shapes: `batch` prompts of `prompt` tokens, `response` sampled tokens each."""

    batch: int
    prompt: int
    response: int

    @property
    def tokens(self) -> int:
        """Sampled tokens per update."""
        return self.batch * self.response


def write_checkpoint(path: Path, shape: str) -> Path:
    """A random GPT-2 of `shape` saved with `save_pretrained` (EOS = the last id, no PAD: GPT-2's)."""
    import torch
    import transformers

    fields = SHAPES[shape]
    eos = fields["vocab_size"] - 1
    config = transformers.GPT2Config(**fields, bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    return path


def prompts_of(work: Workload, vocab_size: int) -> np.ndarray:
    """Random prompt tokens [batch, prompt] below the EOS id."""
    return np.random.default_rng(0).integers(0, vocab_size - 1, (work.batch, work.prompt)).astype(np.int32)


def jax_contenders(path: Path, work: Workload) -> dict[str, Any]:
    """{"sample": prepare, "update": prepare} for `benchmarks.timing.Contender`: a2c_jax's KV-cache sampler
    and its whole A2C update (`a2c_step`, sampling included) on the imported checkpoint."""
    import jax
    import jax.numpy as jnp

    from a2c_jax.core.optim import make_optimizer
    from a2c_jax.rlhf.config import RLHFConfig
    from a2c_jax.rlhf.hf import load_pretrained
    from a2c_jax.rlhf.sampling import Vocab, make_sampler
    from a2c_jax.rlhf.train import Frozen, a2c_step, from_prompts, init_stage, scan_chunk

    model = load_pretrained(path, tokenizer=False)
    eos = model.config.vocab_size - 1
    vocab = Vocab(eos, eos, ())
    tokens = jnp.asarray(prompts_of(work, model.config.vocab_size))
    mask = jnp.ones(tokens.shape, bool)
    params = {"params": model.params}

    def sample() -> Any:
        sampler = jax.jit(make_sampler(model.module, True, 1.0, vocab), static_argnums=3)
        keys = iter(jax.random.split(jax.random.PRNGKey(1), 1 << 16))

        def run(n: int) -> None:
            for _ in range(n):
                jax.block_until_ready(sampler(params, tokens, next(keys), work.response, mask))

        return run

    def update() -> Any:
        config = RLHFConfig(batch=work.batch, response_len=work.response)
        task = from_prompts(tokens, mask, vocab, work.response)
        hparams = config.hparams()
        state = init_stage(params, make_optimizer("adam", hparams, hparams.lr), jax.random.PRNGKey(2), config.beta)
        chunk = jax.jit(lambda s, f: scan_chunk(a2c_step(model.module, config, f, hparams, task), 1)(s))
        frozen = Frozen(params, params)
        holder = {"state": state}

        def run(n: int) -> None:
            for _ in range(n):
                holder["state"], metrics = chunk(holder["state"], frozen)
                jax.block_until_ready(metrics)

        return run

    return {"sample": sample, "update": update}


def torch_contenders(path: Path, work: Workload) -> dict[str, Any]:
    """{"sample_loop", "sample_generate", "update": prepare}: PyTorch's two samplers and its whole update
    (sampled with the hand loop, the faster of the two here) on `transformers`' GPT2LMHeadModel."""
    import torch
    import transformers
    from torch import nn

    from benchmarks.torch_rlhf import gae

    policy = transformers.GPT2LMHeadModel.from_pretrained(path, attn_implementation="sdpa", dtype=torch.float32)
    eos = policy.config.eos_token_id
    width = policy.config.n_embd
    value_head, score_head = nn.Linear(width, 1), nn.Linear(width, 1)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    rm = copy.deepcopy(policy.transformer).eval().requires_grad_(False)
    score_head.requires_grad_(False)
    prompts = torch.tensor(prompts_of(work, policy.config.vocab_size), dtype=torch.long)
    p = work.prompt

    @torch.no_grad()
    def sample_loop() -> tuple[torch.Tensor, torch.Tensor]:
        out = policy(input_ids=prompts, use_cache=True, logits_to_keep=1)  # the LM head on the last position only
        cache, logits = out.cache, out.logits[:, -1]
        done = torch.zeros(work.batch, dtype=torch.bool)
        response = torch.empty(work.batch, work.response, dtype=torch.long)
        valid = torch.empty(work.batch, work.response, dtype=torch.bool)
        for t in range(work.response):
            token = torch.multinomial(torch.softmax(logits, -1), 1)[:, 0]
            valid[:, t] = ~done
            token = torch.where(done, eos, token)
            response[:, t] = token
            done = done | (token == eos)
            if t + 1 < work.response:
                out = policy(input_ids=token[:, None], cache=cache, use_cache=True)
                cache, logits = out.cache, out.logits[:, -1]
        return torch.cat([prompts, response], 1), valid

    @torch.no_grad()
    def sample_generate() -> torch.Tensor:
        return policy.generate(
            prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0, top_p=1.0,
            max_new_tokens=work.response, min_new_tokens=work.response, pad_token_id=eos,
        )  # fmt: skip

    optimizer = torch.optim.Adam([*policy.parameters(), *value_head.parameters()], lr=3e-4, eps=1e-8)

    def update() -> None:
        tokens, mask = sample_loop()
        m = mask.float()
        count = m.sum()
        # the LM head on the positions that chose a response token only (as a2c_jax's update)
        out = policy(input_ids=tokens, output_hidden_states=True, logits_to_keep=work.response + 1)
        log_probs = torch.log_softmax(out.logits[:, :-1], -1)
        new_logp = log_probs.gather(-1, tokens[:, p:, None])[..., 0]
        new_values = value_head(out.hidden_states[-1][:, p - 1 : -1])[..., 0]
        with torch.no_grad():
            logp, values = new_logp.detach(), new_values.detach()
            ref_logp = torch.log_softmax(ref(input_ids=tokens, logits_to_keep=work.response + 1).logits[:, :-1], -1)
            ref_logp = ref_logp.gather(-1, tokens[:, p:, None])[..., 0]
            last = mask.sum(1) - 1
            hidden = rm(input_ids=tokens).last_hidden_state[:, p:]
            score = score_head(hidden[torch.arange(work.batch), last])[:, 0]
            rewards = -0.05 * (logp - ref_logp) * m
            rewards[torch.arange(work.batch), last] += score
            adv = gae(rewards, values, m, 0.95)
            returns = (adv + values) * m
            mean = (adv * m).sum() / count
            std = (((adv - mean) ** 2 * m).sum() / (count - 1)).sqrt()
            adv = (adv - mean) / (std + 1e-8) * m
        loss = -(adv * new_logp * m).sum() / count + 0.5 * (((returns - new_values) ** 2) * m).sum() / count
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_([*policy.parameters(), *value_head.parameters()], 1.0)
        optimizer.step()

    def looped(fn: Any) -> Any:
        def prepare() -> Any:
            def run(n: int) -> None:
                for _ in range(n):
                    fn()

            return run

        return prepare

    return {"sample_loop": looped(sample_loop), "sample_generate": looped(sample_generate), "update": looped(update)}
