"""The same token-level A2C-RLHF loop in plain PyTorch, for `benchmarks.rlhf_throughput`.

Same model (pre-LayerNorm causal transformer: token and learned position embeddings, `layers` blocks
of attention + 4x GELU MLP, final LayerNorm, LM head and scalar head), same sampling (ancestral, BOS/PAD
masked; full recompute of the fixed-length buffer at every position, or a preallocated KV cache as
a2c_jax's default), same update (policy, frozen
reference and reward model forward passes; per-token KL-shaped rewards; GAE over tokens; advantages
whitened over valid tokens; one Adam step with global-norm clipping). Throughput only: weights are
random, which costs the same as trained ones.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

BOS, EOS, PAD, VOCAB = 10, 11, 12, 13


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.heads = heads

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """x [B, L, W] with a causal mask; or, with `cache` = (keys [B, H, Lmax, D], values, position
        0-d tensor), one token x [B, 1, W] attending to the cached positions <= position."""
        b, length, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(width, dim=-1)
        shape = (b, length, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        if cache is None:
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            keys, values, position = cache
            keys.index_copy_(2, position.view(1), k)
            values.index_copy_(2, position.view(1), v)
            mask = (torch.arange(keys.shape[2]) <= position).view(1, 1, 1, -1)
            attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, length, width))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class CausalLM(nn.Module):
    """tokens [B, L] -> (logits [B, L, V], scalar [B, L])."""

    def __init__(self, max_len: int = 32, width: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, width), nn.Embedding(max_len, width)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(width)
        self.lm_head, self.scalar_head = nn.Linear(width, VOCAB), nn.Linear(width, 1)

    def forward(
        self, tokens: torch.Tensor, caches: list | None = None, position: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [B, L] -> (logits [B, L, V], scalar [B, L]); with `caches` (one (keys, values) per
        block) and `position`, one token [B, 1] against the KV cache."""
        positions = torch.arange(tokens.shape[1]) if position is None else position.view(1)
        x = self.tok(tokens) + self.pos(positions)[None]
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else (*caches[i], position))
        x = self.ln(x)
        return self.lm_head(x), self.scalar_head(x)[..., 0]

    def new_caches(self, batch: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        block = self.blocks[0]
        shape = (batch, block.heads, length, self.tok.embedding_dim // block.heads)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.blocks]


def masked_logits(logits: torch.Tensor) -> torch.Tensor:
    blocked = torch.zeros(VOCAB)
    blocked[BOS] = blocked[PAD] = -1e9
    return logits + blocked


@torch.no_grad()
def sample(model: nn.Module, prompts: torch.Tensor, response_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B, L], valid mask [B, R]) by full recompute at every position."""
    b, p = prompts.shape
    tokens = torch.cat([prompts, torch.full((b, response_len), PAD)], dim=1)
    done = torch.zeros(b, dtype=torch.bool)
    valid = torch.zeros(b, response_len, dtype=torch.bool)
    for t in range(response_len):
        logits, _ = model(tokens)
        token = torch.distributions.Categorical(logits=masked_logits(logits[:, p + t - 1])).sample()
        valid[:, t] = ~done
        token = torch.where(done, torch.full_like(token, PAD), token)
        tokens[:, p + t] = token
        done = done | (token == EOS)
    return tokens, valid


@torch.no_grad()
def sample_cached(
    model: nn.Module, prompts: torch.Tensor, response_len: int, step: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sample` with a KV cache: each of the L - 1 positions runs once, one token at a time.
    `step` may be a compiled version of `model` (same call signature)."""
    step = model if step is None else step
    b, p = prompts.shape
    caches = model.new_caches(b, p + response_len)
    for t in range(p - 1):
        step(prompts[:, t : t + 1], caches, torch.tensor(t))
    previous, done = prompts[:, -1], torch.zeros(b, dtype=torch.bool)
    response = torch.full((b, response_len), PAD)
    valid = torch.zeros(b, response_len, dtype=torch.bool)
    for t in range(response_len):
        logits, _ = step(previous[:, None], caches, torch.tensor(p - 1 + t))
        token = torch.distributions.Categorical(logits=masked_logits(logits[:, 0])).sample()
        valid[:, t] = ~done
        token = torch.where(done, torch.full_like(token, PAD), token)
        response[:, t] = token
        done = done | (token == EOS)
        previous = token
    return torch.cat([prompts, response], dim=1), valid


def response_outputs(model: nn.Module, tokens: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    logits, values = model(tokens)
    logits = masked_logits(logits[:, p - 1 : -1])
    return torch.log_softmax(logits, -1).gather(-1, tokens[:, p:, None])[..., 0], values[:, p - 1 : -1]


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, lam: float) -> torch.Tensor:
    """GAE over tokens, gamma 1, [B, R]; a response ends at its last valid token."""
    values = values * mask
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1)
    cont = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1).float()
    deltas = rewards + cont * next_values - values
    adv = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        running = deltas[:, t] + lam * cont[:, t] * running
        adv[:, t] = running
    return adv * mask


class TorchRLHF:
    """Policy, frozen reference and reward model, and one A2C update as in a2c_jax.rlhf."""

    def __init__(self, batch: int, prompt_len: int = 5, response_len: int = 12, beta: float = 0.05) -> None:
        self.policy = CausalLM()
        self.ref = copy.deepcopy(self.policy).requires_grad_(False)
        self.rm = copy.deepcopy(self.policy).requires_grad_(False)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=3e-4, eps=1e-8)
        self.batch, self.p, self.r, self.beta = batch, prompt_len, response_len, beta

    def prompts(self) -> torch.Tensor:
        digits = torch.randint(0, 10, (self.batch, self.p - 1))
        return torch.cat([torch.full((self.batch, 1), BOS), digits], 1)

    def update(self, policy_forward: nn.Module | None = None) -> None:
        """One update; `policy_forward` may be a compiled version of the policy (same parameters)."""
        forward = self.policy if policy_forward is None else policy_forward
        tokens, mask = sample_cached(self.policy, self.prompts(), self.r, forward)
        m = mask.float()
        count = m.sum()
        # one forward pass with gradients; its detached values and log-probs feed the advantages
        logits, all_values = forward(tokens)
        log_probs = torch.log_softmax(masked_logits(logits[:, self.p - 1 : -1]), -1)
        new_logp = log_probs.gather(-1, tokens[:, self.p :, None])[..., 0]
        new_values = all_values[:, self.p - 1 : -1]
        with torch.no_grad():
            logp, values = new_logp.detach(), new_values.detach()
            ref_logp, _ = response_outputs(self.ref, tokens, self.p)
            _, scalar = self.rm(tokens)
            last = mask.sum(1) - 1
            score = scalar[:, self.p :].gather(1, last[:, None])[:, 0]
            rewards = -self.beta * (logp - ref_logp) * m
            rewards[torch.arange(self.batch), last] += score
            adv = gae(rewards, values, m, 0.95)
            returns = (adv + values) * m
            mean = (adv * m).sum() / count
            std = (((adv - mean) ** 2 * m).sum() / (count - 1)).sqrt()
            adv = (adv - mean) / (std + 1e-8) * m
        policy_loss = -(adv * new_logp * m).sum() / count
        value_loss = (((returns - new_values) ** 2) * m).sum() / count
        loss = policy_loss + 0.5 * value_loss
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
        self.opt.step()
