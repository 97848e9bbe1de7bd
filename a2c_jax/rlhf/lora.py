"""LoRA adapters for the A2C-RLHF policy (Hu et al., 2021): W' = W + (alpha / rank) A B on the kernels
of the named modules, A [in, rank] random, B [rank, out] zero, so a fresh policy equals its base.

Functional: the trainable parameters are the adapters and the scalar (value) head only; the base
weights are the frozen reference's, and `merge(base, trained)` builds the policy's full parameters
inside the update (a rank-r product per adapted kernel), so gradients reach only the adapters and the
optimizer holds moments for them alone. Export writes the merged weights.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

from a2c_jax.config import ConfigError

Params = Any
DEFAULT_TARGETS = {"gpt2": ("c_attn", "c_proj", "c_fc"), "llama": ("q_proj", "k_proj", "v_proj", "o_proj")}
"""Modules adapted when none are named: every attention projection (and GPT-2's fused MLP ones)."""


@dataclasses.dataclass(frozen=True)
class LoRA:
    """Adapters of `rank` on the `kernel` of every module named in `targets`, scaled by alpha / rank."""

    rank: int
    alpha: float
    targets: tuple[str, ...]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def adapted(self, base: Params) -> list[tuple[str, ...]]:
        """Paths (flattened keys) of the base's kernels that get an adapter."""
        flat = traverse_util.flatten_dict(base)
        return [
            k for k, v in flat.items() if k[-1] == "kernel" and len(k) > 1 and k[-2] in self.targets and v.ndim == 2
        ]

    def init(self, base: Params, key: jax.Array) -> Params:
        """Trainable parameters for `base` ({"params": ...}): {"adapters": {"/".join(path): {"a", "b"}},
        "scalar_head": base's}. ConfigError when no kernel matches `targets`."""
        paths = self.adapted(base)
        if not paths:
            raise ConfigError(
                f"lora_targets={','.join(self.targets)!r} is invalid: no module of the model has that name"
            )
        flat = traverse_util.flatten_dict(base)
        adapters = {}
        for path, k in zip(paths, jax.random.split(key, len(paths)), strict=True):
            fan_in, fan_out = flat[path].shape
            a = jax.random.normal(k, (fan_in, self.rank), flat[path].dtype) / math.sqrt(fan_in)
            adapters["/".join(path)] = {"a": a, "b": jnp.zeros((self.rank, fan_out), flat[path].dtype)}
        return {"adapters": adapters, "scalar_head": base["params"]["scalar_head"]}

    def merge(self, base: Params, trained: Params) -> Params:
        """The policy's full parameters: base kernels plus scale * A B, the trained scalar head."""
        flat = dict(traverse_util.flatten_dict(base))
        for name, ab in trained["adapters"].items():
            path = tuple(name.split("/"))
            flat[path] = flat[path] + self.scale * (ab["a"] @ ab["b"]).astype(flat[path].dtype)
        merged = traverse_util.unflatten_dict(flat)
        merged["params"] = {**merged["params"], "scalar_head": trained["scalar_head"]}
        return merged


def make_lora(rank: int, alpha: float, targets: str, family: str) -> LoRA | None:
    """The adapters of `--lora-rank/--lora-alpha/--lora-targets` (None for rank 0); targets default to
    the family's attention projections (`DEFAULT_TARGETS`)."""
    if rank == 0:
        return None
    names = tuple(t.strip() for t in targets.split(",") if t.strip()) or DEFAULT_TARGETS[family]
    return LoRA(rank, alpha, names)
