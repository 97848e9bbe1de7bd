"""Hugging Face model directories for `a2c_jax.rlhf.pretrained`'s modules: the checkpoint's tensor
names against the module's parameter paths, `load_pretrained` (config.json, safetensors weights or
their sharded index, the tokenizer), `save_pretrained` (a directory `transformers` loads) and the
tokenizer's special tokens for sampling (`vocab_of`). Extra `hf`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.config import ConfigError
from a2c_jax.rlhf.pretrained import ModelConfig, PretrainedLM, build
from a2c_jax.rlhf.sampling import Vocab

# --- weights: the checkpoint's tensor names against the module's parameter paths ---------------------

Entry = tuple[str, tuple[str, ...], bool]  # (checkpoint name, parameter path, stored transposed)


def weight_names(config: ModelConfig) -> list[Entry]:
    """Every parameter of `config`'s module with its `transformers` checkpoint name (GPT2LMHeadModel's
    or LlamaForCausalLM's, without the `transformer.` / `model.` prefix) and whether the checkpoint
    stores it transposed (torch Linear weights are [out, in]; GPT-2's Conv1D and flax kernels [in, out])."""
    out: list[Entry] = []
    if config.family == "gpt2":
        out += [("wte.weight", ("wte", "embedding"), False), ("wpe.weight", ("wpe", "embedding"), False)]
        for i in range(config.layers):
            for hf, ours in (("ln_1", "ln_1"), ("ln_2", "ln_2")):
                out += [(f"h.{i}.{hf}.weight", (f"h_{i}", ours, "scale"), False)]
                out += [(f"h.{i}.{hf}.bias", (f"h_{i}", ours, "bias"), False)]
            for hf, path in (("attn.c_attn", ("attn", "c_attn")), ("attn.c_proj", ("attn", "c_proj")),
                             ("mlp.c_fc", ("c_fc",)), ("mlp.c_proj", ("c_proj",))):  # fmt: skip
                out += [(f"h.{i}.{hf}.weight", (f"h_{i}", *path, "kernel"), False)]
                out += [(f"h.{i}.{hf}.bias", (f"h_{i}", *path, "bias"), False)]
        out += [("ln_f.weight", ("ln_f", "scale"), False), ("ln_f.bias", ("ln_f", "bias"), False)]
    else:
        out += [("embed_tokens.weight", ("embed_tokens", "embedding"), False)]
        for i in range(config.layers):
            layer = f"layers_{i}"
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                out += [(f"layers.{i}.self_attn.{proj}.weight", (layer, "self_attn", proj, "kernel"), True)]
                if config.qkv_bias and proj != "o_proj":
                    out += [(f"layers.{i}.self_attn.{proj}.bias", (layer, "self_attn", proj, "bias"), False)]
            for proj in ("gate_proj", "up_proj", "down_proj"):
                out += [(f"layers.{i}.mlp.{proj}.weight", (layer, proj, "kernel"), True)]
            for norm in ("input_layernorm", "post_attention_layernorm"):
                out += [(f"layers.{i}.{norm}.weight", (layer, norm, "weight"), False)]
        out += [("norm.weight", ("norm", "weight"), False)]
    if not config.tie_embeddings:
        out += [("lm_head.weight", ("lm_head", "kernel"), True)]
    return out


PREFIXES = ("transformer.", "model.")
IGNORED = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")  # buffers older checkpoints saved


def params_from_tensors(
    config: ModelConfig, tensors: dict[str, Any], where: str, dtype: Any = jnp.float32
) -> dict[str, Any]:
    """The module's parameter tree from a checkpoint's tensors; ConfigError names a missing tensor or a
    shape that does not fit. A sequence-classification `score.weight` [1, width] (a reward model)
    becomes the scalar head; without one the head is zero."""
    named = {}
    for name, value in tensors.items():
        short = next((name[len(p) :] for p in PREFIXES if name.startswith(p)), name)
        if short.startswith("lm_head.") or name.startswith("lm_head."):
            short = name
        named[short] = value
    expected = jax.eval_shape(build(config).init, jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))["params"]
    params: dict[str, Any] = jax.tree.map(lambda x: x, expected)  # a copy whose leaves are replaced
    head = expected["scalar_head"]
    params["scalar_head"] = {k: jnp.zeros(v.shape, dtype) for k, v in head.items()}  # zero unless `score`
    for name, path, transposed in weight_names(config):
        if name not in named:
            raise ConfigError(f"{where}: the checkpoint has no tensor {name!r} (a {config.family} model needs it)")
        value = jnp.asarray(named.pop(name), dtype)
        value = value.T if transposed else value
        target = _get(expected, path)
        if value.shape != target.shape:
            raise ConfigError(f"{where}: tensor {name!r} has shape {value.shape}, the config implies {target.shape}")
        _set(params, path, value)
    if config.tie_embeddings:
        named.pop("lm_head.weight", None)  # a tied head saved anyway
    score = named.pop("score.weight", None)
    if score is not None:
        if tuple(score.shape) != (1, config.width):
            raise ConfigError(f"{where}: score.weight has shape {tuple(score.shape)}; a reward head is [1, width]")
        _set(params, ("scalar_head", "kernel"), jnp.asarray(score, dtype).T)
    unknown = sorted(k for k in named if not k.endswith(IGNORED))
    if unknown:
        raise ConfigError(f"{where}: tensors this {config.family} model does not use: {', '.join(unknown[:5])}")
    return params


def tensors_from_params(config: ModelConfig, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """The checkpoint tensors (GPT2LMHeadModel / LlamaForCausalLM names, float32) of a parameter tree."""
    prefix = "transformer." if config.family == "gpt2" else "model."
    out = {}
    for name, path, transposed in weight_names(config):
        value = np.asarray(_get(params, path), np.float32)
        out[name if name.startswith("lm_head.") else prefix + name] = np.ascontiguousarray(
            value.T if transposed else value
        )
    return out


def _get(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


# --- directories ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Pretrained:
    """A loaded model directory: `module.apply({"params": params}, tokens) -> (logits, values)`;
    `tokenizer` is a `transformers` tokenizer, or None when the directory has none."""

    module: PretrainedLM
    params: dict[str, Any]
    tokenizer: Any
    config: ModelConfig


VALUE_HEAD = "value_head.safetensors"


def read_tensors(path: Path) -> dict[str, Any]:
    """Every tensor of a directory's `model.safetensors`, or of the shards its index lists."""
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (path / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        raise ConfigError(f"model={str(path)!r} has no model.safetensors (or .index.json): save it with "
                          "save_pretrained(..., safe_serialization=True)")  # fmt: skip
    tensors: dict[str, Any] = {}
    for name in files:
        with safe_open(str(path / name), framework="numpy") as f:
            tensors.update({key: f.get_tensor(key) for key in f.keys()})  # noqa: SIM118 (not a dict)
    return tensors


def load_tokenizer(path: Path | str) -> Any:
    """The tokenizer saved in a directory (`transformers.AutoTokenizer`, offline)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"tokenizer={str(path)!r}: no tokenizer could be read there ({err})") from None


HUB_FILES = ["config.json", "*.safetensors", "*.safetensors.index.json", "tokenizer*", "special_tokens_map.json",
             "vocab.json", "merges.txt", "*.model"]  # fmt: skip
"""What a model is fetched with from the Hugging Face Hub: its config, safetensors weights and tokenizer."""


def resolve_model(name: Path | str) -> Path:
    """A local directory as it is; a Hub id ("org/name", not an existing path) fetched with
    `huggingface_hub` into its cache (or found there when offline); ConfigError in one line when it
    cannot be had."""
    path = Path(name)
    text = str(name)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/")):
        return path
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ConfigError(f"model={text!r} is not a directory (a Hub id needs huggingface_hub installed)") from None
    try:
        return Path(snapshot_download(text, allow_patterns=HUB_FILES))
    except Exception as err:  # offline, unknown repository, no access: say which, in one line
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"model={text!r} is not a directory and could not be fetched from the Hub ({reason})"
        ) from None


def load_pretrained(path: Path | str, dtype: Any = jnp.float32, tokenizer: bool = True) -> Pretrained:
    """A `save_pretrained` directory (config.json, safetensors weights, a tokenizer) as a JAX model; a
    Hugging Face Hub id ("org/name") is fetched first when `huggingface_hub` can (`resolve_model`).

    The scalar head comes from `value_head.safetensors` when present (written by `save_pretrained`
    here), else from a sequence-classification `score` head, else zeros."""
    path = resolve_model(path)
    if not (path / "config.json").is_file():
        raise ConfigError(f"model={str(path)!r} is not a model directory (no config.json)")
    config = ModelConfig.from_hf(json.loads((path / "config.json").read_text()), str(path / "config.json"))
    tensors = read_tensors(path)
    params = params_from_tensors(config, tensors, str(path), dtype)
    if (path / VALUE_HEAD).exists():
        from safetensors.numpy import load_file

        head = load_file(str(path / VALUE_HEAD))
        params["scalar_head"] = {"kernel": jnp.asarray(head["kernel"], dtype), "bias": jnp.asarray(head["bias"], dtype)}
    return Pretrained(build(config), params, load_tokenizer(path) if tokenizer else None, config)


def save_pretrained(path: Path | str, module: PretrainedLM, params: dict[str, Any], tokenizer: Any = None) -> Path:
    """Write `params` as a directory `transformers` loads (config.json, model.safetensors, the tokenizer
    when given) plus the scalar head in `value_head.safetensors`. Written beside, then renamed into
    place: a directory is complete or absent."""
    import os
    import shutil
    import tempfile

    from safetensors.numpy import save_file

    path = Path(path)
    config = module.config
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        fields = config.to_hf()
        (staging / "config.json").write_text(json.dumps(fields, indent=2) + "\n")
        save_file(tensors_from_params(config, params), str(staging / "model.safetensors"), metadata={"format": "pt"})
        head = {k: np.asarray(v, np.float32) for k, v in params["scalar_head"].items()}
        save_file(head, str(staging / VALUE_HEAD))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(staging))
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def vocab_of(tokenizer: Any, stops: tuple[str, ...] = ()) -> Vocab:
    """The special tokens of a `transformers` tokenizer for sampling: EOS ends a response, and so does
    each text of `stops` (which the tokenizer must make one token); PAD (EOS when the tokenizer has
    none, as GPT-2's) fills after it; BOS and a PAD distinct from EOS are never sampled. ConfigError for
    a tokenizer without an EOS token, or a stop text that is not one token or is a banned one."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("tokenizer has no eos_token: a response could never end (set eos_token when saving it)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    banned = tuple(sorted({t for t in (tokenizer.bos_token_id, pad) if t is not None and t != eos}))
    ids = []
    for text in stops:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ConfigError(
                f"stop_tokens={text!r} is invalid: the tokenizer makes {len(encoded)} tokens of it {encoded}; "
                "each stop must be one token"
            )
        if encoded[0] in banned:
            raise ConfigError(f"stop_tokens={text!r} is invalid: it is the tokenizer's BOS or PAD token")
        if encoded[0] != eos and encoded[0] not in ids:
            ids.append(int(encoded[0]))
    return Vocab(int(eos), int(pad), banned, tuple(ids))
