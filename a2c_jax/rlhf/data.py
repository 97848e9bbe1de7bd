"""Text data for RLHF on a real model: prompts from a JSONL file, tokenized by the model's tokenizer and
left-padded to one length, as `a2c_jax.rlhf.sampling` takes them.

A prompts file has one JSON object per line with a "prompt" string (TRL's prompt-only format); blank
lines are skipped. Every problem is a ConfigError naming the file and line.
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


def load_prompts(path: Path | str, tokenizer: Any, max_len: int) -> Prompts:
    """Prompts of a JSONL file tokenized as the tokenizer does by default (its BOS included when it adds
    one) and left-padded to the longest; ConfigError for a prompt longer than `max_len` tokens."""
    texts = [r["prompt"] for r in read_jsonl(path, ("prompt",))]
    ids = tokenizer(texts)["input_ids"]
    longest = max(len(row) for row in ids)
    for number, row in enumerate(ids, 1):
        if not row:
            raise ConfigError(f"{path}: prompt {number} is empty after tokenization")
        if len(row) > max_len:
            raise ConfigError(f"{path}: prompt {number} has {len(row)} tokens; at most {max_len} fit (max_prompt_len)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens = np.full((len(ids), longest), pad if pad is not None else 0, np.int32)
    mask = np.zeros((len(ids), longest), bool)
    for i, row in enumerate(ids):
        tokens[i, longest - len(row) :] = row
        mask[i, longest - len(row) :] = True
    return Prompts(tokens, mask, texts)
