"""A reward given as a Python function of the text (`a2c-jax rlhf --reward MODULE:FUNCTION`).

The function takes two lists of strings, the prompts and the responses of a batch (decoded by the
model's tokenizer without special tokens; a response ends before its EOS or stop token), and returns one number per
response:

    def reward(prompts: list[str], responses: list[str]) -> list[float]: ...

It runs on the host inside the compiled A2C update (`jax.pure_callback`), once per update for the whole
population. An exception, a wrong count or a non-finite number is recorded and raised after the chunk
(`runs.loop.ChunkFailed`: the state before the chunk is checkpointed, and the run resumes once the
function is fixed).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.config import ConfigError
from a2c_jax.rlhf.sampling import Vocab
from a2c_jax.runs.loop import ChunkFailed

TextRewardFn = Callable[[list[str], list[str]], Sequence[float]]


def load_reward_function(spec: str) -> TextRewardFn:
    """MODULE:FUNCTION (imported with the working directory on the path) or FILE.py:FUNCTION;
    ConfigError naming `reward` when it cannot be imported or is not callable."""
    source, _, name = spec.rpartition(":")
    if not source or not name.isidentifier():
        raise ConfigError(f"reward={spec!r} is invalid: must be MODULE:FUNCTION or FILE.py:FUNCTION")
    try:
        if source.endswith(".py"):
            path = Path(source)
            if not path.is_file():
                raise ConfigError(f"reward={spec!r} is invalid: {source!r} is not a file")
            module_spec = importlib.util.spec_from_file_location(f"a2c_jax_reward_{path.stem}", path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            sys.path.insert(0, str(Path.cwd()))
            try:
                module = importlib.import_module(source)
            finally:
                sys.path.remove(str(Path.cwd()))
    except ConfigError:
        raise
    except Exception as err:  # the user's module failed to import: say why in one line
        raise ConfigError(f"reward={spec!r}: importing {source!r} failed ({type(err).__name__}: {err})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"reward={spec!r} is invalid: {source!r} has no function {name!r}")
    return fn  # type: ignore[no-any-return]


def response_valid(responses: np.ndarray, vocab: Vocab) -> np.ndarray:
    """The text part of responses [..., R]: the tokens before the first EOS or stop token, PAD excluded
    (bool)."""
    ended = np.cumsum(np.isin(responses, vocab.ends), axis=-1) > 0
    return ~ended & (responses != vocab.pad)


class TextReward:
    """`fn` of the decoded text as a traced reward: `self(prompts [B, P], responses [B, R], prompt_mask)
    -> [B] float32`, any leading batch axes allowed (vmapped populations call it once for all).

    A failure inside the compiled program cannot raise there: it is kept in `error` (the first one)
    and the scores come back NaN; `check()` raises it on the host."""

    def __init__(self, spec: str, fn: TextRewardFn, tokenizer: Any, vocab: Vocab) -> None:
        self.spec, self.fn, self.tokenizer, self.vocab = spec, fn, tokenizer, vocab
        self.error: str | None = None

    def texts(self, prompts: np.ndarray, responses: np.ndarray, prompt_mask: np.ndarray) -> tuple[list[str], list[str]]:
        """Rows of tokens [N, P], [N, R], [N, P] as (prompt texts, response texts)."""

        def decode(rows: np.ndarray, keep: np.ndarray) -> list[str]:
            pairs = zip(rows, keep, strict=True)
            return [self.tokenizer.decode(row[m].tolist(), skip_special_tokens=True) for row, m in pairs]

        return decode(prompts, prompt_mask), decode(responses, response_valid(responses, self.vocab))

    def score_texts(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """The function's scores [N] float32; ValueError for a wrong count or a non-finite score."""
        raw = self.fn(list(prompts), list(responses))
        try:
            scores = np.asarray(raw, np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"returned {type(raw).__name__}, not a list of numbers") from None
        if len(scores) != len(responses):
            raise ValueError(f"returned {len(scores)} scores for {len(responses)} responses")
        if not np.all(np.isfinite(scores)):
            bad = int(np.argmax(~np.isfinite(scores)))
            raise ValueError(f"returned {scores[bad]} for response {bad} ({responses[bad]!r})")
        return scores.astype(np.float32)

    def host(self, prompts: np.ndarray, responses: np.ndarray, prompt_mask: np.ndarray) -> np.ndarray:
        lead = responses.shape[:-1]
        rows = [np.asarray(x).reshape(-1, x.shape[-1]) for x in (prompts, responses, prompt_mask)]
        try:
            scores = self.score_texts(*self.texts(*rows))
        except Exception as err:  # kept for check(): an exception cannot leave the compiled program cleanly
            if self.error is None:
                self.error = f"{type(err).__name__}: {err}"
            scores = np.full(len(rows[0]), np.nan, np.float32)
        return scores.reshape(lead)

    def __call__(self, prompts: jax.Array, responses: jax.Array, prompt_mask: jax.Array | None) -> jax.Array:
        mask = jnp.ones(prompts.shape, bool) if prompt_mask is None else prompt_mask
        out = jax.ShapeDtypeStruct(responses.shape[:-1], jnp.float32)
        return jax.pure_callback(self.host, out, prompts, responses, mask, vmap_method="broadcast_all")

    def check(self) -> None:
        """Raise `ChunkFailed` naming the function and its first failure, if it failed."""
        if self.error is not None:
            error, self.error = self.error, None
            raise ChunkFailed(f"reward={self.spec!r} failed: {error}")


def text_reward(spec: str, tokenizer: Any, vocab: Vocab, prompts: list[str]) -> TextReward:
    """Load `spec` and try it on two of the run's prompts with empty responses, so a function that
    cannot score is a ConfigError before anything is written."""
    reward = TextReward(spec, load_reward_function(spec), tokenizer, vocab)
    trial = prompts[:2]
    try:
        reward.score_texts(trial, [""] * len(trial))
    except Exception as err:
        raise ConfigError(f"reward={spec!r} cannot score responses ({type(err).__name__}: {err})") from None
    return reward
