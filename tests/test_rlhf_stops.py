"""Stop tokens and held-out evaluation prompts on an imported GPT-2 (tests/_hf_models.py): a response
sampled with stop tokens is, draw for draw, the response sampled without them cut in NumPy at its first
EOS or stop token; the reward model reads it there; a reward function sees the text before it."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from _hf_models import PROMPTS, write_prompts  # noqa: E402

from a2c_jax.config import ConfigError  # noqa: E402
from a2c_jax.rlhf.hf import load_pretrained, vocab_of  # noqa: E402


def cut_at_first_end(response: np.ndarray, ends: set[int], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference: each row [R] kept up to and including its first token of `ends`, PAD after;
    (tokens [B, R], valid mask [B, R])."""
    tokens, mask = np.full_like(response, pad), np.zeros(response.shape, bool)
    for i, row in enumerate(response):
        for t, token in enumerate(row):
            tokens[i, t], mask[i, t] = token, True
            if int(token) in ends:
                break
    return tokens, mask


@pytest.fixture(scope="module")
def gpt2(checkpoints):
    return load_pretrained(checkpoints["gpt2"])


def test_stop_texts_become_single_token_ids_and_bad_ones_are_refused(gpt2):
    tokenizer = gpt2.tokenizer
    vocab = vocab_of(tokenizer, (".", " cat", "</s>"))
    assert vocab.stops == tuple(tokenizer.convert_tokens_to_ids([".", "Ġcat"]))  # EOS itself is not repeated
    assert vocab.ends == (tokenizer.eos_token_id, *vocab.stops)
    with pytest.raises(ConfigError, match=r"stop_tokens=' cat number 3' is invalid: the tokenizer makes 3 tokens"):
        vocab_of(tokenizer, (" cat number 3",))
    with pytest.raises(ConfigError, match="stop_tokens='<s>' is invalid: it is the tokenizer's BOS or PAD token"):
        vocab_of(tokenizer, ("<s>",))


@pytest.mark.parametrize("kv_cache", [True, False])
def test_a_response_ends_at_its_first_stop_token_draw_for_draw(gpt2, kv_cache):
    """Same keys with and without stop tokens: the stopped sample is the free one cut at its first EOS
    or stop token (NumPy), with the same log-probabilities there. The stop tokens are the two most
    frequent tokens of the free samples (of those a text gives), so rows really are cut."""
    from a2c_jax.rlhf.sampling import make_sampler, padded_inputs
    from a2c_jax.rlhf.train import sequence_score

    tokenizer, params = gpt2.tokenizer, {"params": gpt2.params}
    batch = tokenizer(PROMPTS * 4, padding=True, return_tensors="np")
    prompts, prompt_mask = jnp.asarray(batch["input_ids"], jnp.int32), jnp.asarray(batch["attention_mask"], bool)
    p, length, key = prompts.shape[1], 8, jax.random.PRNGKey(5)
    free_vocab = vocab_of(tokenizer)

    def draw(vocab):
        sampler = make_sampler(gpt2.module, kv_cache, 1.3, vocab)
        return jax.jit(sampler, static_argnums=3)(params, prompts, key, length, prompt_mask)

    free = draw(free_vocab)
    response = np.asarray(free.tokens)[:, p:]
    counts = np.bincount(response[np.asarray(free.mask)], minlength=gpt2.config.vocab_size)
    counts[free_vocab.eos] = 0

    def as_text(t):  # a token whose text encodes back to it alone (a stop token's text must)
        return tokenizer(tokenizer.decode([t]), add_special_tokens=False)["input_ids"] == [t]

    common = [int(t) for t in np.argsort(counts)[::-1] if counts[t] and as_text(int(t))][:2]
    stopped_vocab = vocab_of(tokenizer, tuple(tokenizer.decode([t]) for t in common))
    assert set(stopped_vocab.stops) == set(common)
    stopped = draw(stopped_vocab)

    expected, mask = cut_at_first_end(response, set(stopped_vocab.ends), stopped_vocab.pad)
    assert (~mask).sum() > 0 and mask.sum(1).min() >= 1  # rows really were cut
    np.testing.assert_array_equal(np.asarray(stopped.tokens)[:, p:], expected)
    np.testing.assert_array_equal(np.asarray(stopped.mask), mask)
    np.testing.assert_allclose(np.asarray(stopped.log_prob)[mask], np.asarray(free.log_prob)[mask], atol=1e-5)
    assert np.all(np.asarray(stopped.log_prob)[~mask] == 0.0)

    # the reward model's score is its scalar head at the stop token (the last valid position)
    head = {"params": {**gpt2.params, "scalar_head": jax.tree.map(lambda x: x + 0.1, gpt2.params["scalar_head"])}}
    head["params"]["scalar_head"]["kernel"] = jax.random.normal(key, gpt2.params["scalar_head"]["kernel"].shape)
    score = sequence_score(gpt2.module, head, stopped.tokens, p, stopped_vocab, prompt_mask)
    positions, key_mask = padded_inputs(prompt_mask, stopped.tokens.shape[1])
    _, scalar = gpt2.module.apply(head, stopped.tokens, positions, key_mask)
    last = p + mask.sum(1) - 1
    np.testing.assert_allclose(np.asarray(score), np.asarray(scalar)[np.arange(len(last)), last], rtol=1e-6)


def test_a_reward_function_sees_the_text_before_the_stop_token(gpt2):
    from a2c_jax.rlhf.rewards import TextReward

    tokenizer = gpt2.tokenizer
    vocab = vocab_of(tokenizer, (".",))
    stop, eos, pad = vocab.stops[0], vocab.eos, vocab.pad
    cat, dog = tokenizer.convert_tokens_to_ids(["Ġcat", "Ġdog"])
    responses = np.array([[cat, stop, dog, pad], [dog, dog, eos, pad], [cat, cat, dog, dog]], np.int32)
    prompts = np.asarray(tokenizer(["a", "a", "a"])["input_ids"], np.int32)
    reward = TextReward("test:f", lambda p, r: [0.0] * len(r), tokenizer, vocab)
    _, texts = reward.texts(prompts, responses, np.ones(prompts.shape, bool))
    assert texts == [" cat", " dog dog", " cat cat dog dog"]


@pytest.mark.slow
def test_the_rlhf_command_takes_stop_tokens_and_held_out_prompts(checkpoints, tmp_path):
    """`--stop-token . --eval-prompts-file HELD.jsonl`: the evaluation reads only the held-out prompts
    (the reward function sees them; samples.json shows them), training only the prompts file's; the
    stop tokens are saved and a resumed run keeps them."""
    from a2c_jax.cli import main

    seen = tmp_path / "seen.jsonl"
    rewards = tmp_path / "rewards.py"
    rewards.write_text(
        "import json\n"
        "def reward(prompts, responses):\n"
        f"    with open({str(seen)!r}, 'a') as f:\n"
        "        f.write(json.dumps({'prompts': prompts, 'responses': responses}) + '\\n')\n"
        "    return [float(len(r)) for r in responses]\n"
    )
    held = ["a cat", "the dog number 7 is"]
    out = tmp_path / "run"
    argv = ["rlhf", "--model", str(checkpoints["gpt2"]), "--prompts", str(write_prompts(tmp_path / "p.jsonl", PROMPTS)),
            "--eval-prompts-file", str(write_prompts(tmp_path / "held.jsonl", held)), "--reward", f"{rewards}:reward",
            "--stop-token", ".", "--stop-token", " cat", "--updates", "4", "--batch", "4", "--response-len", "5",
            "--eval-prompts", "8", "--log-points", "2", "--out", str(out), "--quiet", "--no-compile-cache"]  # fmt: skip
    assert main(argv) == 0
    calls = [json.loads(line) for line in seen.read_text().splitlines()]
    evaluations = [c for c in calls if set(c["prompts"]) == set(held)]
    training = [c for c in calls if set(c["prompts"]) <= set(PROMPTS)]
    assert len(evaluations) >= 3 and len(training) == len(calls) - len(evaluations), [c["prompts"] for c in calls]
    assert all(len(c["prompts"]) == 2 for c in evaluations)  # the file's 2 prompts, not 8 draws
    for call in calls:
        assert not any("." in r for r in call["responses"]), call  # cut before it ("." is in no other token)
    samples = json.loads((out / "samples.json").read_text())
    assert all(s["text"].startswith(tuple(held)) for s in samples["reference"])
    record = json.loads((out / "config.json").read_text())
    assert record["stop_tokens"] == [".", " cat"] and record["eval_prompts_file"].endswith("held.jsonl")
    assert main(["rlhf", "--resume", str(out), "--quiet"]) == 0  # already finished: the saved settings read back
