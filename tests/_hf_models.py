"""Random Hugging Face checkpoints and text files for the tests of the imported-model path (nothing is
downloaded): a byte-level BPE tokenizer trained with `tokenizers`, 2-layer GPT-2 and Llama models
written with `save_pretrained`, prompt and preference JSONL files."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

TEXTS = [f"the {w} number {i} is {i * 7 % 13} and then {w}s follow." for i in range(200) for w in ("cat", "dog")]
PROMPTS = ["the cat number 3", "a dog", "the dog number 12 is 2 and"]


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXTS, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", padding_side="left"
    )


def save_checkpoints(tmp_path_factory):
    """{family: directory} of random GPT-2 and Llama models with the tokenizer, as save_pretrained writes."""
    tokenizer = make_tokenizer()
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    configs = {
        "gpt2": transformers.GPT2Config(
            vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4, initializer_range=0.2, **ids
        ),
        "llama": transformers.LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.2,
            rms_norm_eps=1e-6, **ids,
        ),
    }  # fmt: skip
    out = {}
    for family, config in configs.items():
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        if family == "llama":  # RMSNorm weights start at 1: move them so the norm's weight is checked
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "norm" in name:
                        p.add_(0.3 * torch.randn_like(p))
        path = tmp_path_factory.mktemp(family)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        out[family] = path
    return out


def write_prompts(path, texts):
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    return path


def write_preferences(path, count=200):
    """Pairs where the chosen response speaks of a cat and the rejected one of a dog."""
    with path.open("w") as f:
        for i in range(count):
            tail = f" number {i % 17} is {i % 13}"
            f.write(json.dumps({"prompt": PROMPTS[i % 3], "chosen": " the cat" + tail, "rejected": " the dog" + tail}))
            f.write("\n")
    return path
