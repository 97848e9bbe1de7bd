"""Text data for RLHF on a real model: prompts and preference pairs from JSONL files, tokenized by the
model's tokenizer, prompts left-padded to one length as `a2c_jax.rlhf.sampling` takes them.

A prompts file has one JSON object per line with a "prompt" string (TRL's prompt-only format); a
preferences file one with "prompt", "chosen" and "rejected" strings (TRL's reward-trainer format with
an explicit prompt). Blank lines are skipped. Every problem is a ConfigError naming the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from a2c_jax.config import ConfigError


class Prompts(NamedTuple):
    """Tokenized prompts: tokens int32 [N, P] left-padded with the PAD id, mask bool [N, P] (True on
    real tokens), and the texts."""

    tokens: np.ndarray
    mask: np.ndarray
    texts: list[str]


def read_jsonl(path: Path | str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    """The records of a JSONL file, each holding every one of `fields` as a string."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{number}: not a JSON object ({err.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f'{path}:{number}: not a JSON object (one per line, e.g. {{"prompt": "..."}})')
        for field in fields:
            if not isinstance(record.get(field), str):
                raise ConfigError(f"{path}:{number}: no {field!r} string (each line needs {', '.join(fields)})")
        records.append({field: record[field] for field in fields})
    if not records:
        raise ConfigError(f"{path}: holds no records")
    return records


def pad_id(tokenizer: Any) -> int:
    """The id that fills padding: the tokenizer's PAD, else its EOS (GPT-2's), else 0."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad) if pad is not None else 0


def left_pad(ids: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of token ids left-padded to the longest: (tokens int32 [N, P], mask bool [N, P])."""
    longest = max(len(row) for row in ids)
    tokens = np.full((len(ids), longest), pad, np.int32)
    mask = np.zeros((len(ids), longest), bool)
    for i, row in enumerate(ids):
        tokens[i, longest - len(row) :] = row
        mask[i, longest - len(row) :] = True
    return tokens, mask


def tokenize_prompts(path: Path | str, texts: list[str], tokenizer: Any, max_len: int) -> list[list[int]]:
    """Each prompt's ids as the tokenizer makes them by default (its BOS included when it adds one);
    ConfigError for an empty prompt or one longer than `max_len` tokens (numbered from 1)."""
    ids = tokenizer(texts)["input_ids"]
    for number, row in enumerate(ids, 1):
        if not row:
            raise ConfigError(f"{path}: prompt {number} is empty after tokenization")
        if len(row) > max_len:
            raise ConfigError(f"{path}: prompt {number} has {len(row)} tokens; at most {max_len} fit (max_prompt_len)")
    return [list(row) for row in ids]


def load_prompts(path: Path | str, tokenizer: Any, max_len: int, limit: int | None = None) -> Prompts:
    """Prompts of a JSONL file (the first `limit` when given) tokenized as the tokenizer does by default
    (its BOS included when it adds one) and left-padded to the longest; ConfigError for a prompt longer
    than `max_len` tokens."""
    texts = [r["prompt"] for r in read_jsonl(path, ("prompt",))][:limit]
    tokens, mask = left_pad(tokenize_prompts(path, texts, tokenizer, max_len), pad_id(tokenizer))
    return Prompts(tokens, mask, texts)


class Preferences(NamedTuple):
    """Tokenized preference pairs: `chosen` and `rejected` int32 [N, P + R], each a left-padded prompt
    [N, P] followed by the response, its EOS and right padding [N, R]; `prompt_mask` bool [N, P] (True
    on the prompt's real tokens), shared by both. P and R are the longest prompt and response (+ EOS)."""

    chosen: np.ndarray
    rejected: np.ndarray
    prompt_mask: np.ndarray

    @property
    def prompt_len(self) -> int:
        return int(self.prompt_mask.shape[1])


def load_preferences(path: Path | str, tokenizer: Any, max_len: int) -> Preferences:
    """Preference pairs of a JSONL file: the prompt tokenized as `load_prompts` does, each response
    without special tokens and ended by the tokenizer's EOS, as a sampled response ends. ConfigError
    naming the pair when a prompt plus its longer response (EOS included) exceeds `max_len` tokens."""
    records = read_jsonl(path, ("prompt", "chosen", "rejected"))
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("tokenizer has no eos_token: a response could never end (set eos_token when saving it)")
    prompts = tokenize_prompts(path, [r["prompt"] for r in records], tokenizer, max_len - 1)
    pad = pad_id(tokenizer)
    responses = {}
    for side in ("chosen", "rejected"):
        ids = tokenizer([r[side] for r in records], add_special_tokens=False)["input_ids"]
        responses[side] = [[*row, eos] for row in ids]
    for number, prompt in enumerate(prompts, 1):
        longer = max(len(responses["chosen"][number - 1]), len(responses["rejected"][number - 1]))
        if len(prompt) + longer > max_len:
            raise ConfigError(
                f"{path}: pair {number} has {len(prompt)} prompt and {longer} response tokens (EOS included); "
                f"at most {max_len} fit the model's context"
            )
    tokens, mask = left_pad(prompts, pad)
    width = max(len(row) for side in responses.values() for row in side)
    if tokens.shape[1] + width > max_len:  # rows are padded to the longest prompt and response
        raise ConfigError(
            f"{path}: the longest prompt ({tokens.shape[1]} tokens) and the longest response ({width}, EOS "
            f"included) together exceed the model's context of {max_len} tokens; shorten the longest"
        )

    def full(side: str) -> np.ndarray:
        body = np.full((len(records), width), pad, np.int32)
        for i, row in enumerate(responses[side]):
            body[i, : len(row)] = row
        return np.concatenate([tokens, body], axis=1)

    return Preferences(full("chosen"), full("rejected"), mask)
