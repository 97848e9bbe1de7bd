"""Hugging Face models in JAX (a2c_jax.rlhf.pretrained, a2c_jax.rlhf.hf) against `transformers`' own PyTorch code on the
same randomly initialised checkpoints, built and saved here (nothing is downloaded): a byte-level BPE
tokenizer trained with `tokenizers`, 2-layer GPT-2 and Llama models (Llama with grouped-query attention)
written with `save_pretrained`."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from _hf_models import PROMPTS, write_preferences, write_prompts  # noqa: E402

from a2c_jax.config import ConfigError  # noqa: E402
from a2c_jax.rlhf.hf import load_pretrained, save_pretrained  # noqa: E402
from a2c_jax.rlhf.pretrained import build  # noqa: E402


def torch_model(path, cls=None):
    cls = cls or transformers.AutoModelForCausalLM
    return cls.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()


def left_padded(tokenizer):
    """Token ids [B, L], key mask [B, L] and positions [B, L] (0 at each row's first real token)."""
    batch = tokenizer(PROMPTS, padding=True, return_tensors="np")
    mask = batch["attention_mask"].astype(bool)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return batch["input_ids"].astype(np.int32), mask, positions.astype(np.int32)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_logits_match_transformers_on_a_left_padded_batch(checkpoints, family):
    loaded = load_pretrained(checkpoints[family])
    tokens, mask, positions = left_padded(loaded.tokenizer)
    assert mask.sum(1).min() < mask.shape[1]  # the batch really is padded
    logits, values = jax.jit(loaded.module.apply)({"params": loaded.params}, tokens, positions, mask)
    with torch.no_grad():
        reference = torch_model(checkpoints[family])(
            input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
            position_ids=torch.tensor(positions, dtype=torch.long),
        ).logits.numpy()  # fmt: skip
    ours = np.asarray(logits)
    assert np.abs(reference).max() > 1.0  # weights large enough that a wrong layer shows
    assert np.abs(ours[mask] - reference[mask]).max() < 1e-4
    assert np.all(np.asarray(values) == 0.0)  # a fresh scalar head is zero
    # first_output: the heads on the last positions only (an RLHF update reads the response's)
    tail, tail_values = jax.jit(loaded.module.apply, static_argnames="first_output")(
        {"params": loaded.params}, tokens, positions, mask, first_output=2
    )
    assert tail.shape == (len(tokens), tokens.shape[1] - 2, reference.shape[-1]) and tail_values.shape == tail.shape[:2]
    assert np.abs(np.asarray(tail)[mask[:, 2:]] - reference[:, 2:][mask[:, 2:]]).max() < 1e-4


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_padding_does_not_change_a_prompts_logits(checkpoints, family):
    loaded = load_pretrained(checkpoints[family], tokenizer=True)
    tokens, mask, positions = left_padded(loaded.tokenizer)
    apply = jax.jit(loaded.module.apply)
    padded, _ = apply({"params": loaded.params}, tokens, positions, mask)
    row = int(np.argmin(mask.sum(1)))  # the shortest prompt, the most padding
    alone = tokens[row : row + 1][:, mask[row]]
    unpadded, _ = apply({"params": loaded.params}, alone)
    assert np.abs(np.asarray(padded)[row][mask[row]] - np.asarray(unpadded)[0]).max() < 1e-5


def greedy(module, params, prompts: np.ndarray, new_tokens: int) -> np.ndarray:
    """Greedy continuation with the KV cache: the prompt in one call, then one token per call."""
    decoder = module.clone(decode=True)
    batch, length = prompts.shape
    buffer = jnp.zeros((batch, length + new_tokens), jnp.int32)
    cache = jax.tree.map(jnp.zeros_like, jax.eval_shape(decoder.init, jax.random.PRNGKey(0), buffer)["cache"])

    @jax.jit
    def run(params, cache, prompts):
        (logits, _), mutated = decoder.apply({"params": params, "cache": cache}, prompts, mutable=["cache"])
        first = jnp.argmax(logits[:, -1], -1).astype(jnp.int32)

        def step(carry, _):
            cache, token = carry
            (logits, _), mutated = decoder.apply({"params": params, "cache": cache}, token[:, None], mutable=["cache"])
            nxt = jnp.argmax(logits[:, 0], -1).astype(jnp.int32)
            return (mutated["cache"], nxt), token

        _, tokens = jax.lax.scan(step, (mutated["cache"], first), None, length=new_tokens)
        return tokens.T

    return np.asarray(run(params, cache, jnp.asarray(prompts)))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_kv_cache_greedy_decoding_equals_transformers_generate(checkpoints, family):
    loaded = load_pretrained(checkpoints[family])
    prompts = np.asarray(loaded.tokenizer(["the cat number", "the dog number"])["input_ids"], np.int32)
    assert prompts.shape[0] == 2 and len(set(map(len, prompts))) == 1
    ours = greedy(loaded.module, loaded.params, prompts, 8)
    model = torch_model(checkpoints[family])
    with torch.no_grad():
        theirs = model.generate(
            torch.tensor(prompts, dtype=torch.long), max_new_tokens=8, do_sample=False,
            attention_mask=torch.ones(prompts.shape, dtype=torch.long), pad_token_id=loaded.tokenizer.pad_token_id,
        ).numpy()[:, prompts.shape[1] :]  # fmt: skip
    eos = loaded.tokenizer.eos_token_id
    for mine, row in zip(ours, theirs, strict=True):  # generate stops a row at its EOS (then pads)
        stop = int(np.argmax(row == eos)) + 1 if np.any(row == eos) else len(row)
        np.testing.assert_array_equal(mine[:stop], row[:stop])
    # and the cache gives the logits of a full recompute
    full, _ = loaded.module.apply({"params": loaded.params}, np.concatenate([prompts, ours[:, :-1]], axis=1))
    np.testing.assert_array_equal(np.argmax(np.asarray(full)[:, prompts.shape[1] - 1 :], -1), ours)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_export_is_a_directory_transformers_loads_with_the_same_logits(checkpoints, family, tmp_path):
    loaded = load_pretrained(checkpoints[family])
    params = jax.tree.map(lambda x: x * 1.01, loaded.params)  # "trained": not the original weights
    params["scalar_head"] = {"kernel": jnp.full((loaded.config.width, 1), 0.1), "bias": jnp.full((1,), 0.5)}
    out = save_pretrained(tmp_path / "export", loaded.module, params, loaded.tokenizer)
    tokens = np.asarray(loaded.tokenizer(["the dog number 12 is 2"])["input_ids"], np.int32)
    ours, values = loaded.module.apply({"params": params}, tokens)
    with torch.no_grad():
        theirs = torch_model(out)(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    assert np.abs(np.asarray(ours) - theirs).max() < 1e-4
    again = load_pretrained(out)
    assert again.tokenizer.eos_token_id == loaded.tokenizer.eos_token_id
    _, values_again = again.module.apply({"params": again.params}, tokens)
    assert np.abs(np.asarray(values_again) - np.asarray(values)).max() == 0.0  # the value head came back
    assert not list(tmp_path.glob(".export.*"))  # no staging directory left


def test_a_reward_models_score_head_becomes_the_scalar_head(checkpoints, tmp_path):
    """GPT2ForSequenceClassification (one label) saved by transformers: our value at each row's last token
    equals its reward."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoints["gpt2"])
    config = transformers.AutoConfig.from_pretrained(checkpoints["gpt2"], num_labels=1)
    torch.manual_seed(1)
    rm = transformers.GPT2ForSequenceClassification(config).eval()
    rm.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    loaded = load_pretrained(tmp_path / "rm")
    tokens, mask, positions = left_padded(loaded.tokenizer)
    _, values = loaded.module.apply({"params": loaded.params}, tokens, positions, mask)
    with torch.no_grad():
        reward = rm(
            input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
            position_ids=torch.tensor(positions, dtype=torch.long),
        ).logits[:, 0].numpy()  # fmt: skip
    assert np.abs(reward).max() > 0.1
    assert np.abs(np.asarray(values)[:, -1] - reward).max() < 1e-4


def test_bad_model_directories_are_one_clear_line(checkpoints, tmp_path):
    with pytest.raises(ConfigError, match=r"no config\.json"):
        load_pretrained(tmp_path)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match=r"model_type='bert' is not supported \(allowed: 'gpt2'"):
        load_pretrained(odd)
    fields = json.loads((checkpoints["gpt2"] / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps(fields))
    with pytest.raises(ConfigError, match=r"has no model\.safetensors"):
        load_pretrained(odd)
    (odd / "config.json").write_text(json.dumps({**fields, "n_layer": 3}))
    (odd / "model.safetensors").symlink_to(checkpoints["gpt2"] / "model.safetensors")
    with pytest.raises(ConfigError, match=r"has no tensor 'h\.2\.ln_1\.weight'"):
        load_pretrained(odd, tokenizer=False)


def test_the_module_runs_without_a_checkpoint(checkpoints):
    """`build` of a config alone gives a module that initialises (random weights) like any LanguageModel."""
    loaded = load_pretrained(checkpoints["llama"], tokenizer=False)
    module = build(loaded.config)
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((2, 5), jnp.int32))
    logits, values = module.apply(variables, jnp.ones((2, 5), jnp.int32))
    assert logits.shape == (2, 5, loaded.config.vocab_size) and values.shape == (2, 5)
    with pytest.raises(ValueError, match="exceeds the model's context of 64 tokens"):
        module.apply(variables, jnp.ones((1, 65), jnp.int32))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_sampling_left_padded_prompts_records_transformers_log_probs(checkpoints, family, tmp_path):
    """Prompts of different lengths from a JSONL file, left-padded; sampled with the KV cache and with
    full recompute (same key: same tokens); each recorded log-probability equals `transformers`' own
    log-softmax on the finished sequences (attention mask and positions from the padding), the banned
    tokens ruled out."""
    from a2c_jax.rlhf.data import load_prompts
    from a2c_jax.rlhf.hf import vocab_of
    from a2c_jax.rlhf.sampling import make_sampler

    loaded = load_pretrained(checkpoints[family])
    prompts = load_prompts(write_prompts(tmp_path / "p.jsonl", PROMPTS), loaded.tokenizer, 16)
    assert prompts.mask.sum(1).min() < prompts.mask.shape[1]
    vocab = vocab_of(loaded.tokenizer)
    variables = {"params": loaded.params}
    outs = {
        kv: jax.jit(make_sampler(loaded.module, kv, 1.0, vocab), static_argnums=3)(
            variables, prompts.tokens, jax.random.PRNGKey(5), 10, prompts.mask
        )
        for kv in (True, False)
    }
    np.testing.assert_array_equal(np.asarray(outs[True].tokens), np.asarray(outs[False].tokens))
    out = outs[True]
    tokens, mask = np.asarray(out.tokens), np.asarray(out.mask)
    p = prompts.tokens.shape[1]
    np.testing.assert_array_equal(tokens[:, :p], prompts.tokens)
    assert np.all(tokens[:, p:][~mask] == vocab.pad)
    attention = np.concatenate([prompts.mask, np.ones_like(tokens[:, p:], bool)], axis=1)
    positions = np.maximum(np.cumsum(attention, axis=1) - 1, 0)
    with torch.no_grad():
        logits = torch_model(checkpoints[family])(
            input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(attention, dtype=torch.long),
            position_ids=torch.tensor(positions, dtype=torch.long),
        ).logits[:, p - 1 : -1]  # fmt: skip
    logits[..., list(vocab.banned)] = -float("inf")
    reference = torch.log_softmax(logits, -1).gather(-1, torch.tensor(tokens[:, p:], dtype=torch.long)[..., None])
    reference = reference[..., 0].numpy()
    assert mask.sum() > 10
    for kv, sampled in outs.items():
        np.testing.assert_allclose(np.asarray(sampled.log_prob)[mask], reference[mask], atol=1e-4, err_msg=str(kv))


def test_prompt_files_and_vocabularies_fail_with_one_clear_line(checkpoints, tmp_path):
    from a2c_jax.rlhf.data import load_prompts
    from a2c_jax.rlhf.hf import vocab_of

    tokenizer = load_pretrained(checkpoints["gpt2"]).tokenizer
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a dog"}\n{"text": "no prompt here"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: no 'prompt' string"):
        load_prompts(bad, tokenizer, 16)
    bad.write_text('{"prompt": "a dog"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: not a JSON object"):
        load_prompts(bad, tokenizer, 16)
    bad.write_text("\n\n")
    with pytest.raises(ConfigError, match="holds no records"):
        load_prompts(bad, tokenizer, 16)
    with pytest.raises(ConfigError, match=r"prompt 1 has \d+ tokens; at most 2 fit"):
        load_prompts(write_prompts(bad, ["the dog number 12 is 2 and"]), tokenizer, 2)
    vocab = vocab_of(tokenizer)
    assert (vocab.eos, vocab.pad) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert set(vocab.banned) == {tokenizer.bos_token_id, tokenizer.pad_token_id}
    tokenizer.pad_token = None  # as GPT-2's own tokenizer: PAD falls back to EOS, which stays sampleable
    vocab = vocab_of(tokenizer)
    assert vocab.pad == vocab.eos and vocab.eos not in vocab.banned
    tokenizer.eos_token = None
    with pytest.raises(ConfigError, match="tokenizer has no eos_token"):
        vocab_of(tokenizer)


@pytest.mark.slow
def test_a2c_updates_on_an_imported_model_with_text_prompts(checkpoints, tmp_path):
    """A2C on a loaded GPT-2 with left-padded JSONL prompts, a reward model loaded from a
    sequence-classification directory: the reward model's score of each sample equals `transformers`'
    own on the same sequences, the first update sees KL 0 (policy = reference), responses end at the
    tokenizer's EOS, and 40 updates raise the reward model's score."""
    from a2c_jax.core.optim import make_optimizer
    from a2c_jax.rlhf.config import RLHFConfig
    from a2c_jax.rlhf.data import load_prompts
    from a2c_jax.rlhf.hf import vocab_of
    from a2c_jax.rlhf.sampling import make_sampler, response_outputs
    from a2c_jax.rlhf.train import Frozen, a2c_step, from_prompts, init_stage, judge, scan_chunk

    policy = load_pretrained(checkpoints["gpt2"])
    config = transformers.AutoConfig.from_pretrained(checkpoints["gpt2"], num_labels=1)
    torch.manual_seed(2)
    rm_torch = transformers.GPT2ForSequenceClassification(config).eval()
    with torch.no_grad():
        rm_torch.score.weight.mul_(20.0)  # a reward with a spread worth climbing
    rm_torch.save_pretrained(tmp_path / "rm")
    rm = load_pretrained(tmp_path / "rm", tokenizer=False)
    vocab = vocab_of(policy.tokenizer)
    prompts = load_prompts(write_prompts(tmp_path / "p.jsonl", PROMPTS * 3), policy.tokenizer, 16)
    task = from_prompts(prompts.tokens, prompts.mask, vocab, 6)
    frozen = Frozen({"params": policy.params}, {"params": rm.params})
    rlhf = RLHFConfig(batch=16, response_len=6, lr=3e-3, beta=0.02, ent_coef=0.0)

    # one batch judged by hand against transformers
    samples = make_sampler(policy.module, True, 1.0, vocab)(
        {"params": policy.params}, prompts.tokens, jax.random.PRNGKey(0), 6, prompts.mask
    )
    logits, values = response_outputs(policy.module, {"params": policy.params}, samples.tokens, task.prompt_len,
                                      1.0, vocab, prompts.mask)  # fmt: skip
    out = judge(policy.module, frozen, samples, prompts.tokens, task, logits, values, 1.0, prompts.mask)
    tokens, mask = np.asarray(samples.tokens), np.asarray(samples.mask)
    attention = np.concatenate([prompts.mask, np.ones_like(mask)], axis=1)
    last = task.prompt_len + mask.sum(1) - 1  # each row's last valid response token
    with torch.no_grad():
        hidden = rm_torch.transformer(
            input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(attention, dtype=torch.long),
            position_ids=torch.tensor(np.maximum(np.cumsum(attention, 1) - 1, 0), dtype=torch.long),
        ).last_hidden_state  # fmt: skip
        reference = rm_torch.score(hidden[np.arange(len(tokens)), last])[:, 0].numpy()
    np.testing.assert_allclose(np.asarray(out["score"]), reference, atol=1e-4)
    assert np.all(np.asarray(out["k1"]) == 0.0)
    ended = np.asarray(out["eos"]) > 0
    responses = tokens[:, task.prompt_len :]
    assert all(responses[i][mask[i]][-1] == vocab.eos for i in np.flatnonzero(ended))

    hparams = rlhf.hparams()
    state = init_stage({"params": policy.params}, make_optimizer("adam", hparams, hparams.lr), jax.random.PRNGKey(1),
                       rlhf.beta)  # fmt: skip
    run = jax.jit(scan_chunk(a2c_step(policy.module, rlhf, frozen, hparams, task), 40))
    _, metrics = run(state)
    score, k1 = np.asarray(metrics["score"]), np.asarray(metrics["k1"])
    assert np.all(np.isfinite(score)) and k1[0] == 0.0
    assert score[-10:].mean() > score[:10].mean() + 5.0, score  # 17 -> 29 here


def test_preference_files_tokenize_prompt_then_response_then_eos(checkpoints, tmp_path):
    """Each pair is the left-padded prompt (as load_prompts makes it) followed by the response's own tokens
    (no special tokens), EOS and PAD; lines without a field and pairs too long for the context fail."""
    from a2c_jax.rlhf.data import load_preferences

    tokenizer = load_pretrained(checkpoints["gpt2"]).tokenizer
    prefs = load_preferences(write_preferences(tmp_path / "p.jsonl", 4), tokenizer, 64)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    for i in range(4):
        prompt = tokenizer(PROMPTS[i % 3])["input_ids"]
        p = prefs.prompt_len
        assert prefs.prompt_mask[i].tolist() == [False] * (p - len(prompt)) + [True] * len(prompt)
        for side, row in (("cat", prefs.chosen[i]), ("dog", prefs.rejected[i])):
            text = tokenizer(f" the {side} number {i % 17} is {i % 13}", add_special_tokens=False)["input_ids"]
            assert row[:p][prefs.prompt_mask[i]].tolist() == prompt and np.all(row[:p][~prefs.prompt_mask[i]] == pad)
            response = row[p:].tolist()
            assert response[: len(text) + 1] == [*text, eos] and set(response[len(text) + 1 :]) <= {pad}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: no 'rejected' string"):
        load_preferences(bad, tokenizer, 64)
    with pytest.raises(ConfigError, match=r"pair 1 has .* at most 8 fit"):
        load_preferences(tmp_path / "p.jsonl", tokenizer, 8)


def test_a_text_reward_sees_the_decoded_responses_inside_a_vmapped_program(checkpoints, tmp_path):
    """The reward function is called from the compiled program with the tokenizer's own decoding of each
    prompt and of each response up to its EOS; a population axis (vmap) reaches it as one call, and a
    failure inside the program is raised on the host by check()."""
    from a2c_jax.rlhf.data import load_prompts
    from a2c_jax.rlhf.hf import vocab_of
    from a2c_jax.rlhf.rewards import TextReward, text_reward
    from a2c_jax.runs.loop import ChunkFailed

    tokenizer = load_pretrained(checkpoints["gpt2"]).tokenizer
    vocab = vocab_of(tokenizer)
    prompts = load_prompts(write_prompts(tmp_path / "p.jsonl", PROMPTS), tokenizer, 16)
    words = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in (" cat", " the dog", " a")]
    responses = np.full((3, 5), vocab.pad, np.int32)
    for i, ids in enumerate(words):
        responses[i, : len(ids)] = ids
        responses[i, len(ids)] = vocab.eos
        if len(ids) + 2 < 5:
            responses[i, len(ids) + 2] = ids[0]  # after EOS: not part of the text
    seen = []

    def fn(prompt_texts, response_texts):
        seen.append((list(prompt_texts), list(response_texts)))
        return [len(r) for r in response_texts]

    reward = TextReward("test:fn", fn, tokenizer, vocab)
    both = jnp.stack([responses, responses[::-1]])  # a population of two
    scores = jax.jit(jax.vmap(reward, in_axes=(None, 0, None)))(prompts.tokens, both, prompts.mask)
    assert len(seen) == 1 and len(seen[0][1]) == 6  # one call for the whole population
    expected = [tokenizer.decode(ids) for ids in words]
    assert seen[0][1] == expected + expected[::-1]
    assert seen[0][0] == [tokenizer.decode(tokenizer(p)["input_ids"], skip_special_tokens=True) for p in PROMPTS] * 2
    np.testing.assert_array_equal(np.asarray(scores), [[len(t) for t in expected], [len(t) for t in expected[::-1]]])
    reward.check()  # nothing failed

    wrong = TextReward("test:wrong", lambda p, r: [1.0], tokenizer, vocab)
    assert np.all(np.isnan(np.asarray(jax.jit(wrong)(prompts.tokens, responses, prompts.mask))))
    with pytest.raises(ChunkFailed, match="reward='test:wrong' failed: ValueError: returned 1 scores for 3 responses"):
        wrong.check()
    (tmp_path / "bad_reward.py").write_text("def reward(prompts, responses):\n    return 'many'\n")
    for spec, message in [
        ("nomodule_xyz:reward", "importing 'nomodule_xyz' failed"),
        (f"{tmp_path / 'bad_reward.py'}:missing", "has no function 'missing'"),
        ("reward", "must be MODULE:FUNCTION"),
        (f"{tmp_path / 'bad_reward.py'}:reward", "cannot score responses (ValueError: returned str, not a list"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            text_reward(spec, tokenizer, vocab, PROMPTS)


@pytest.mark.parametrize("top_k, top_p", [(5, 1.0), (0, 0.6), (40, 0.9), (1, 1.0), (0, 0.05)])
def test_truncation_keeps_the_tokens_transformers_warpers_keep(top_k, top_p):
    """Truncation (top-k, then top-p) rules out the same tokens as `transformers`' TopK and TopP logits
    warpers applied in that order, on peaked and flat rows."""
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    from a2c_jax.rlhf.sampling import Truncation

    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(6, 300)) * np.array([[0.1], [1.0], [3.0], [8.0], [1.0], [0.5]])).astype(np.float32)
    expected = torch.tensor(logits)
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    ours = np.asarray(Truncation(top_k, top_p)(jnp.asarray(logits)))
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(expected.numpy()))
    np.testing.assert_array_equal(ours[np.isfinite(ours)], logits[np.isfinite(ours)])


def test_top_k_1_sampling_is_greedy_and_keeps_the_untruncated_log_probs(checkpoints):
    """A sampler with top_k=1 draws the argmax at every step (KV cache and full recompute alike), and
    records each token's log-probability under the whole distribution, not the truncated one."""
    from a2c_jax.rlhf.hf import vocab_of
    from a2c_jax.rlhf.sampling import Truncation, make_sampler, response_outputs

    loaded = load_pretrained(checkpoints["gpt2"])
    vocab = vocab_of(loaded.tokenizer)
    params = {"params": loaded.params}
    prompts = jnp.asarray(loaded.tokenizer(["the cat number", "the dog number"])["input_ids"], jnp.int32)
    for kv_cache in (True, False):
        sampler = make_sampler(loaded.module, kv_cache, 1.0, vocab, Truncation(top_k=1))
        out = jax.jit(sampler, static_argnums=3)(params, prompts, jax.random.PRNGKey(3), 6)
        logits, _ = response_outputs(loaded.module, params, out.tokens, prompts.shape[1], 1.0, vocab)
        mask = np.asarray(out.mask)
        response = np.asarray(out.tokens)[:, prompts.shape[1] :]
        assert np.all(response[mask] == np.asarray(jnp.argmax(logits, -1))[mask])
        full = np.asarray(jax.nn.log_softmax(logits))
        recorded = np.take_along_axis(full, response[..., None], -1)[..., 0]
        np.testing.assert_allclose(np.asarray(out.log_prob)[mask], recorded[mask], atol=1e-5)
        assert np.all(np.asarray(out.log_prob)[mask] < 0)  # not log 1 = 0 of the truncated draw


def test_lora_starts_at_the_base_and_merges_as_w_plus_scaled_ab(checkpoints):
    """Zero-initialised B: the merged parameters are the base's exactly (same logits). With B set, each
    adapted kernel is W + alpha / rank * A B (NumPy), every other weight untouched."""
    from flax import traverse_util

    from a2c_jax.rlhf.lora import LoRA

    loaded = load_pretrained(checkpoints["gpt2"], tokenizer=False)
    base = {"params": loaded.params}
    lora = LoRA(rank=4, alpha=8.0, targets=("c_attn", "c_fc"))
    trained = lora.init(base, jax.random.PRNGKey(0))
    assert len(trained["adapters"]) == 4  # c_attn and c_fc of 2 layers
    merged = lora.merge(base, trained)
    for x, y in zip(jax.tree.leaves(merged), jax.tree.leaves(base), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    rng = np.random.default_rng(1)
    trained = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), trained)
    merged_flat = traverse_util.flatten_dict(lora.merge(base, trained))
    for path, value in traverse_util.flatten_dict(base).items():
        name = "/".join(path)
        if name in trained["adapters"]:
            ab = trained["adapters"][name]
            expected = np.asarray(value) + 2.0 * np.asarray(ab["a"], np.float64) @ np.asarray(ab["b"], np.float64)
            np.testing.assert_allclose(np.asarray(merged_flat[path]), expected, rtol=1e-5, atol=1e-5)
        elif path[-2] == "scalar_head":
            np.testing.assert_array_equal(np.asarray(merged_flat[path]), np.asarray(trained["scalar_head"][path[-1]]))
        else:
            np.testing.assert_array_equal(np.asarray(merged_flat[path]), np.asarray(value))


def test_lora_a2c_updates_train_only_the_adapters_and_the_value_head(checkpoints, tmp_path):
    """A2C with LoRA: the state holds the adapters and the value head alone; after updates the merged
    policy differs from the frozen base in the adapted kernels only (and the value head), and the first
    update sees KL 0 (the policy starts as the reference)."""
    from flax import traverse_util

    from a2c_jax.core.optim import make_optimizer
    from a2c_jax.rlhf.config import RLHFConfig
    from a2c_jax.rlhf.data import load_prompts
    from a2c_jax.rlhf.hf import vocab_of
    from a2c_jax.rlhf.lora import make_lora
    from a2c_jax.rlhf.train import Frozen, Trainable, a2c_step, from_prompts, init_stage, scan_chunk

    policy = load_pretrained(checkpoints["gpt2"])
    base = {"params": policy.params}
    prompts = load_prompts(write_prompts(tmp_path / "p.jsonl", PROMPTS), policy.tokenizer, 16)
    task = from_prompts(prompts.tokens, prompts.mask, vocab_of(policy.tokenizer), 6)
    rm = jax.tree.map(lambda x: x + 0.05, base)  # a reward head that is not zero
    config = RLHFConfig(batch=8, response_len=6, lr=1e-2)
    lora = make_lora(2, 4.0, "", "gpt2")
    hparams = config.hparams()
    state = init_stage(lora.init(base, jax.random.PRNGKey(0)), make_optimizer("adam", hparams, hparams.lr),
                       jax.random.PRNGKey(1), config.beta)  # fmt: skip
    assert set(state.params) == {"adapters", "scalar_head"}
    step = a2c_step(policy.module, config, Frozen(base, rm), hparams, task, trainable=Trainable(lora))
    state, metrics = jax.jit(scan_chunk(step, 3))(state)
    assert np.asarray(metrics["k1"])[0] == 0.0 and np.all(np.isfinite(np.asarray(metrics["loss"])))
    merged = traverse_util.flatten_dict(lora.merge(base, state.params))
    changed = {"/".join(p) for p, v in traverse_util.flatten_dict(base).items()
               if not np.array_equal(np.asarray(v), np.asarray(merged[p]))}  # fmt: skip
    allowed = set(state.params["adapters"]) | {"params/scalar_head/kernel", "params/scalar_head/bias"}
    assert changed and changed <= allowed, changed - allowed
    assert any(name in state.params["adapters"] for name in changed)


def test_lora_gradients_are_the_chain_rule_of_the_full_weight_gradient(checkpoints):
    """For a loss of the merged model, the adapters' gradients are scale * A^T G (for B) and
    scale * G B^T (for A), G being the gradient with respect to the merged kernel (NumPy products)."""
    from flax import traverse_util

    from a2c_jax.rlhf.lora import LoRA

    loaded = load_pretrained(checkpoints["gpt2"], tokenizer=False)
    base = {"params": loaded.params}
    lora = LoRA(rank=3, alpha=6.0, targets=("c_attn",))
    rng = np.random.default_rng(2)
    trained = jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=x.shape) * 0.1, x.dtype), lora.init(base, jax.random.PRNGKey(0))
    )
    tokens = jnp.asarray(rng.integers(0, 290, (2, 7)), jnp.int32)

    def loss(full):
        logits, values = loaded.module.apply(full, tokens)
        return jnp.mean(jax.nn.log_softmax(logits)[..., 5]) + jnp.mean(values**2)

    merged = lora.merge(base, trained)
    full_grad = traverse_util.flatten_dict(jax.grad(loss)(merged))
    lora_grad = jax.grad(lambda t: loss(lora.merge(base, t)))(trained)
    for name, ab in trained["adapters"].items():
        g = np.asarray(full_grad[tuple(name.split("/"))], np.float64)
        a, b = np.asarray(ab["a"], np.float64), np.asarray(ab["b"], np.float64)
        np.testing.assert_allclose(np.asarray(lora_grad["adapters"][name]["b"]), 2.0 * a.T @ g, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(lora_grad["adapters"][name]["a"]), 2.0 * g @ b.T, rtol=1e-4, atol=1e-6)
