"""Token-level A2C for RLHF: the pieces against plain NumPy loops and closed forms.

Independent references: a NumPy GAE loop per response; the per-token reward definition summed by
hand; PPO-clip's gradient at theta = theta_old (Huang et al. 2022: A2C is PPO with one full-batch
epoch); and the closed-form optimum of the KL-regularised objective, pi_ref * exp(r / beta) / Z,
reached by the real A2C update on a one-token bandit.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a2c_jax.config import ConfigError
from a2c_jax.core.distributions import categorical_log_prob
from a2c_jax.core.optim import make_optimizer
from a2c_jax.rlhf.config import RLHFConfig
from a2c_jax.rlhf.objective import TokenBatch, kl_estimates, rlhf_loss, token_advantages, token_rewards
from a2c_jax.rlhf.sampling import make_sampler, response_logits, response_outputs, sample
from a2c_jax.rlhf.task import BOS, EOS, PAD, VOCAB_SIZE, TaskSpec, gold_reward, response_mask, sample_prompts
from a2c_jax.rlhf.train import (
    Frozen,
    a2c_step,
    check_model,
    digits,
    init_stage,
    judge,
    make_model,
    scan_chunk,
    sequence_score,
)

B, R = 6, 7


def random_responses(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Responses [B, R] with EOS at random places (one row without EOS) and their valid masks."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, R + 1, size=B)
    lengths[0] = R  # no EOS: the response fills every position
    tokens = np.full((B, R), PAD)
    mask = np.zeros((B, R), bool)
    for b, n in enumerate(lengths):
        tokens[b, :n] = rng.integers(0, 10, size=n)
        if b > 0:
            tokens[b, n - 1] = EOS
        mask[b, :n] = True
    return tokens, mask


def token_gae_reference(rewards, values, mask, gamma, lam):
    """One response at a time: delta_t = r_t + gamma V_{t+1} - V_t (V after the last token is 0)."""
    adv = np.zeros_like(rewards, dtype=np.float64)
    for b in range(rewards.shape[0]):
        n = int(mask[b].sum())
        running = 0.0
        for t in reversed(range(n)):
            next_v = values[b, t + 1] if t + 1 < n else 0.0
            delta = rewards[b, t] + gamma * next_v - values[b, t]
            running = delta + gamma * lam * running
            adv[b, t] = running
    return adv, np.where(mask, adv + values, 0.0)


def test_response_mask_stops_after_first_eos():
    tokens, mask = random_responses(0)
    np.testing.assert_array_equal(np.asarray(response_mask(jnp.asarray(tokens))), mask)


@pytest.mark.parametrize("lam", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_token_gae_matches_numpy_loop(lam, gamma):
    rng = np.random.default_rng(1)
    _, mask = random_responses(1)
    rewards = np.where(mask, rng.normal(size=(B, R)), 0.0).astype(np.float32)
    values = rng.normal(size=(B, R)).astype(np.float32)  # padding values are garbage on purpose
    adv, ret = jax.jit(token_advantages)(rewards, values, jnp.asarray(mask), gamma, lam)
    ref_adv, ref_ret = token_gae_reference(rewards, values, mask, gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), ref_adv, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ret), ref_ret, atol=1e-5)
    assert np.all(np.asarray(adv)[~mask] == 0.0)


def test_token_gae_limits():
    """lambda 0 is the one-step TD error; lambda 1 with gamma 1 is the return-to-go minus V."""
    rng = np.random.default_rng(2)
    _, mask = random_responses(2)
    rewards = np.where(mask, rng.normal(size=(B, R)), 0.0).astype(np.float32)
    values = np.where(mask, rng.normal(size=(B, R)), 0.0).astype(np.float32)
    adv0, _ = token_advantages(rewards, values, jnp.asarray(mask), 1.0, 0.0)
    next_values = np.where(np.roll(mask, -1, axis=1) & (np.arange(R) < R - 1), np.roll(values, -1, axis=1), 0.0)
    np.testing.assert_allclose(np.asarray(adv0), np.where(mask, rewards + next_values - values, 0.0), atol=1e-6)
    adv1, _ = token_advantages(rewards, values, jnp.asarray(mask), 1.0, 1.0)
    to_go = np.flip(np.cumsum(np.flip(rewards, 1), 1), 1)
    np.testing.assert_allclose(np.asarray(adv1), np.where(mask, to_go - values, 0.0), atol=1e-5)


def test_nothing_after_eos_contributes():
    """Changing rewards or values on padding changes no valid advantage."""
    rng = np.random.default_rng(3)
    _, mask = random_responses(3)
    rewards = np.where(mask, rng.normal(size=(B, R)), 0.0).astype(np.float32)
    values = rng.normal(size=(B, R)).astype(np.float32)
    noisy_r = np.where(mask, rewards, 100.0).astype(np.float32)
    noisy_v = np.where(mask, values, -50.0).astype(np.float32)
    a, _ = token_advantages(rewards, values, jnp.asarray(mask), 1.0, 0.9)
    b, _ = token_advantages(noisy_r, noisy_v, jnp.asarray(mask), 1.0, 0.9)
    np.testing.assert_allclose(np.asarray(a)[mask], np.asarray(b)[mask], atol=1e-5)


def test_token_rewards_score_on_last_valid_and_sum():
    rng = np.random.default_rng(4)
    _, mask = random_responses(4)
    score = rng.normal(size=B).astype(np.float32)
    logp = np.where(mask, rng.normal(size=(B, R)) - 2.0, 0.0).astype(np.float32)
    ref = np.where(mask, rng.normal(size=(B, R)) - 2.0, 0.0).astype(np.float32)
    beta = 0.3
    rewards = np.asarray(token_rewards(score, logp, ref, jnp.asarray(mask), beta))
    last = mask.sum(1) - 1
    for b in range(B):
        expected = -beta * (logp[b] - ref[b]) * mask[b]
        expected[last[b]] += score[b]
        np.testing.assert_allclose(rewards[b], expected, atol=1e-6)
    k1, k3 = kl_estimates(logp, ref, jnp.asarray(mask))
    np.testing.assert_allclose(rewards.sum(1), score - beta * np.asarray(k1), atol=1e-5)
    assert np.all(rewards[~mask] == 0.0)
    # k3 per token: (r - 1) - log r with r = pi_ref / pi, from the formula in NumPy
    rewards3 = np.asarray(token_rewards(score, logp, ref, jnp.asarray(mask), beta, "k3"))
    for b in range(B):
        r = np.exp(ref[b].astype(np.float64) - logp[b])
        expected = -beta * ((r - 1.0) - np.log(r)) * mask[b]
        expected[last[b]] += score[b]
        np.testing.assert_allclose(rewards3[b], expected, atol=1e-5)
    np.testing.assert_allclose(rewards3.sum(1), score - beta * np.asarray(k3), atol=1e-5)
    assert np.all(rewards3[~mask] == 0.0)
    at_last = (np.arange(R)[None] == last[:, None]) * score[:, None]
    assert np.all(rewards3 <= at_last + 1e-6)  # k3 >= 0 on every token: no token is rewarded beyond the score


def test_kl_estimators():
    rng = np.random.default_rng(5)
    _, mask = random_responses(5)
    logp = np.where(mask, rng.normal(size=(B, R)) - 2.0, 0.0).astype(np.float32)
    k1, k3 = kl_estimates(logp, logp, jnp.asarray(mask))
    assert np.all(np.asarray(k1) == 0.0) and np.all(np.asarray(k3) == 0.0)
    ref = np.where(mask, rng.normal(size=(B, R)) - 2.0, 0.0).astype(np.float32)
    k1, k3 = kl_estimates(logp, ref, jnp.asarray(mask))
    log_r = np.where(mask, ref - logp, 0.0)
    np.testing.assert_allclose(np.asarray(k1), -log_r.sum(1), atol=1e-5)
    np.testing.assert_allclose(np.asarray(k3), (np.where(mask, np.exp(log_r) - 1 - log_r, 0.0)).sum(1), atol=1e-5)
    assert np.all(np.asarray(k3) >= 0)


def test_gold_reward_by_hand():
    prompts = np.array([[BOS, 1, 2, 3, 4], [BOS, 9, 9, 0, 0]])
    responses = np.array([[5, 5, EOS, PAD, PAD], [9, 9, 9, 9, 9]])  # sum 10 vs 10 / no EOS, 45 vs 18
    gold = np.asarray(gold_reward(jnp.asarray(prompts), jnp.asarray(responses)))
    np.testing.assert_allclose(gold, [-0.05 * 3, -27 / 4 - 0.05 * 5 - 1.0], atol=1e-6)


@pytest.fixture(scope="module")
def tiny():
    """A small transformer (the default architecture, narrower) and its random parameters."""
    config = RLHFConfig(width=32, heads=2, prompt_digits=3, response_len=6, context=10)
    model = make_model(config)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, config.spec.seq_len), jnp.int32))
    return config, model, params


@pytest.mark.parametrize("kv_cache", [False, True], ids=["full-recompute", "kv-cache"])
def test_sampled_log_prob_equals_recomputed(tiny, kv_cache):
    """The log-probabilities recorded token by token while sampling (full recompute, or one token at a
    time against a KV cache) equal one forward pass over the finished sequences: the causal mask
    hides the future (and padding never leaks backwards)."""
    config, model, params = tiny
    spec = config.spec
    prompts = sample_prompts(jax.random.PRNGKey(1), 32, spec)
    sampler = jax.jit(make_sampler(model, kv_cache), static_argnums=3)
    out = sampler(params, prompts, jax.random.PRNGKey(2), spec.response_len)
    tokens = np.asarray(out.tokens)
    assert np.all(tokens[:, : spec.prompt_len] == np.asarray(prompts))
    mask = np.asarray(out.mask)
    np.testing.assert_array_equal(mask, np.asarray(response_mask(out.tokens[:, spec.prompt_len :])))
    assert not np.isin(tokens[:, spec.prompt_len :][mask], [BOS, PAD]).any()
    logits, _ = response_outputs(model, params, out.tokens, spec.prompt_len)
    recomputed = categorical_log_prob(logits, out.tokens[:, spec.prompt_len :])
    np.testing.assert_allclose(np.asarray(out.log_prob), np.where(mask, np.asarray(recomputed), 0.0), atol=2e-5)
    if kv_cache:  # the same keys draw the same responses either way
        full = sample(model, params, prompts, jax.random.PRNGKey(2), spec.response_len)
        np.testing.assert_array_equal(np.asarray(full.tokens), tokens)


def test_temperature_is_the_same_when_sampling_and_when_scoring(tiny):
    """At T = 0.5 the first response token is drawn from softmax(logits / T) (NumPy, BOS and PAD ruled
    out), the recorded log-probability is that distribution's, and the policy scored against itself as
    reference has KL exactly 0; reading the reference at T = 1 instead would not (the mismatch behind
    negative KL reports)."""
    config, model, params = tiny
    spec, temperature, n = config.spec, 0.5, 4096
    prompt = sample_prompts(jax.random.PRNGKey(3), 1, spec)
    prompts = jnp.repeat(prompt, n, axis=0)
    out = jax.jit(make_sampler(model, True, temperature), static_argnums=3)(
        params, prompts, jax.random.PRNGKey(4), spec.response_len
    )
    raw, _ = model.apply(params, prompt)
    z = np.asarray(raw[0, spec.prompt_len - 1], np.float64) / temperature
    z[[BOS, PAD]] = -np.inf
    expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    first = np.asarray(out.tokens[:, spec.prompt_len])
    counts = np.bincount(first, minlength=VOCAB_SIZE) / n
    assert 0.5 * np.abs(counts - expected).sum() < 0.04  # total variation, sampling noise ~0.02
    at_one = np.exp(z * temperature - (z * temperature).max())
    assert 0.5 * np.abs(counts - at_one / at_one.sum()).sum() > 0.08  # and not the T = 1 distribution
    np.testing.assert_allclose(np.asarray(out.log_prob[:, 0]), np.log(expected[first]), atol=2e-5)
    frozen = Frozen(params, params)
    logits, values = response_outputs(model, params, out.tokens, spec.prompt_len, temperature)
    judged = judge(model, frozen, out, prompts, digits(spec), logits, values, temperature)
    assert np.all(np.asarray(judged["k1"]) == 0.0) and np.all(np.asarray(judged["k3"]) == 0.0)
    mismatched = judge(model, frozen, out, prompts, digits(spec), logits, values, 1.0)  # reference read at T = 1
    assert np.abs(np.asarray(mismatched["k1"])).mean() > 0.1


def test_missing_eos_penalty_lowers_only_the_unended_responses(tiny):
    config, model, params = tiny
    spec = config.spec
    prompts = sample_prompts(jax.random.PRNGKey(6), 64, spec)
    out = make_sampler(model)(params, prompts, jax.random.PRNGKey(7), spec.response_len)
    logits, values = response_outputs(model, params, out.tokens, spec.prompt_len)
    frozen = Frozen(params, params)
    plain = judge(model, frozen, out, prompts, digits(spec), logits, values)
    penalised = judge(model, frozen, out, prompts, digits(spec), logits, values, missing_eos_penalty=2.5)
    ended = np.any(np.asarray(out.mask) & (np.asarray(out.tokens[:, spec.prompt_len :]) == EOS), axis=1)
    assert ended.any() and not ended.all()  # both kinds of response are in the batch
    np.testing.assert_allclose(
        np.asarray(plain["score"]) - np.asarray(penalised["score"]), np.where(ended, 0.0, 2.5), atol=1e-6
    )
    with pytest.raises(ConfigError, match=r"missing_eos_penalty=-1\.0 is invalid"):
        RLHFConfig(missing_eos_penalty=-1.0).validate()


def test_kl_target_needs_a_starting_beta():
    with pytest.raises(ConfigError, match=r"beta=0 is invalid with kl_target=0\.1"):
        RLHFConfig(beta=0.0, kl_target=0.1).validate()
    RLHFConfig(beta=0.0).validate()  # a fixed beta of 0 (no penalty) stays allowed
    with pytest.raises(ConfigError, match=r"temperature=0(\.0)? is invalid"):
        RLHFConfig(temperature=0.0).validate()


def test_check_model_names_the_mismatch(tiny):
    config, model, params = tiny
    check_model(model, params, config.spec)
    with pytest.raises(ConfigError, match="length 20"):
        check_model(model, params, TaskSpec(prompt_digits=3, response_len=16))  # context 10 holds 10


@pytest.mark.slow
def test_a2c_gradient_equals_ppo_clip_gradient_at_old_params(tiny):
    """At theta = theta_old the ratio is 1, clipping is inactive, and the PPO-clip surrogate's gradient
    is E[A grad log pi]: the A2C policy gradient. (Value and entropy terms are shared and set to 0.)"""
    config, model, params = tiny
    spec = config.spec
    prompts = sample_prompts(jax.random.PRNGKey(3), 16, spec)
    out = sample(model, params, prompts, jax.random.PRNGKey(4), spec.response_len)
    rng = np.random.default_rng(6)
    advantage = jnp.asarray(np.where(np.asarray(out.mask), rng.normal(size=out.mask.shape), 0.0), jnp.float32)
    batch = TokenBatch(out.tokens, advantage, jnp.zeros_like(advantage), out.mask)
    a2c = jax.grad(lambda p: rlhf_loss(p, model, batch, spec.prompt_len, 0.0, 0.0, whiten=False)[0])(params)

    def ppo_clip(p):
        logits, _ = response_outputs(model, p, out.tokens, spec.prompt_len)
        logp = categorical_log_prob(logits, out.tokens[:, spec.prompt_len :])
        ratio = jnp.exp(logp - jax.lax.stop_gradient(logp))
        surrogate = jnp.minimum(ratio * advantage, jnp.clip(ratio, 0.8, 1.2) * advantage)
        m = out.mask.astype(jnp.float32)
        return -jnp.sum(surrogate * m) / jnp.sum(m)

    ppo = jax.grad(ppo_clip)(params)
    for x, y in zip(jax.tree.leaves(a2c), jax.tree.leaves(ppo), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)
    assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(a2c)) > 1e-4  # not trivially zero


class TableLM(nn.Module):
    """A language model without context: one logits table for every position, and a scalar head
    that looks up the current token (so, as a reward model, the score of a one-token response is
    `scalar[token]`). It implements the same protocol as the transformer."""

    logits_init: np.ndarray
    scalar_init: np.ndarray

    @nn.compact
    def __call__(self, tokens):
        table = self.param("logits", lambda *_: jnp.asarray(self.logits_init, jnp.float32))
        scalar = self.param("scalar", lambda *_: jnp.asarray(self.scalar_init, jnp.float32))
        logits = jnp.broadcast_to(table, (*tokens.shape, VOCAB_SIZE))
        return logits, scalar[tokens]


def test_bandit_reaches_the_kl_regularised_optimum():
    """One-token responses: the real A2C update (sampling, reward model, per-token KL reward, GAE,
    loss, Adam) drives pi toward pi_ref * exp(r / beta) / Z over the 11 allowed tokens."""
    rng = np.random.default_rng(7)
    ref_logits = rng.normal(size=VOCAB_SIZE).astype(np.float32)
    reward = rng.uniform(0.0, 1.0, size=VOCAB_SIZE).astype(np.float32)
    beta = 0.5
    config = RLHFConfig(prompt_digits=1, response_len=1, batch=2048, lr=0.03, beta=beta, whiten=False, vf_coef=0.5)
    model = TableLM(ref_logits, np.zeros(VOCAB_SIZE, np.float32))
    ref_params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3), jnp.int32))
    rm_params = TableLM(ref_logits, reward).init(jax.random.PRNGKey(0), jnp.zeros((1, 3), jnp.int32))
    hparams = config.hparams()
    state = init_stage(ref_params, make_optimizer("adam", hparams, hparams.lr), jax.random.PRNGKey(1), beta)
    run = jax.jit(scan_chunk(a2c_step(model, config, Frozen(ref_params, rm_params), hparams), 400))
    state, _ = run(state)
    allowed = np.array([t not in (BOS, PAD) for t in range(VOCAB_SIZE)])
    pi = np.asarray(jax.nn.softmax(response_logits(state.params["params"]["logits"])))
    ref = np.where(allowed, np.exp(ref_logits), 0.0)
    ref /= ref.sum()
    optimum = ref * np.exp(reward / beta)
    optimum /= optimum.sum()
    start_distance = 0.5 * np.abs(ref - optimum).sum()
    distance = 0.5 * np.abs(pi - optimum).sum()
    assert start_distance > 0.1, start_distance
    assert distance < 0.02, (distance, pi, optimum)
    # the sequence score comes from the reward model at the one response token
    tokens = jnp.asarray([[BOS, 3, EOS], [BOS, 3, 5]])
    np.testing.assert_allclose(np.asarray(sequence_score(model, rm_params, tokens, 2)), reward[[EOS, 5]])


def run_cli(argv, capsys):
    """`a2c-jax ARGV` in this process: (exit status, stdout, stderr lines)."""
    from a2c_jax.cli import main

    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, [line for line in captured.err.splitlines() if line.strip()]


BAD_INPUT = [
    (["rlhf", "--beta", "-0.1"], "beta=-0.1 is invalid"),
    (["rlhf", "--gae-lambda", "1.5"], "gae_lambda=1.5 is invalid: must be in [0, 1]"),
    (["rlhf", "--gae-lambda", "-0.5"], "gae_lambda=-0.5 is invalid"),
    (["rlhf", "--response-len", "40"], "response_len=40 is invalid"),
    (["rlhf", "--prompt-digits", "30"], "response_len=12 is invalid"),
    (["rlhf", "--heads", "3"], "heads=3 is invalid: must divide width=64"),
    (["rlhf", "--batch", "1"], "batch=1 is invalid"),
    (["rlhf", "--seed", "-1"], "seed=-1 is invalid"),
    (["rlhf", "--lr", "0"], "lr=0.0 is invalid"),
    (["rlhf-sweep", "--betas", "0,x"], "betas='0,x' is invalid"),
    (["rlhf-sweep", "--betas", "0.1,-1"], "beta=-1.0 is invalid"),
    (["rlhf-sweep", "--betas", ","], "betas=',' is invalid"),
    (["rlhf-sweep", "--betas", "0.1,0.2,0.1"], "betas=0.1,0.2,0.1 is invalid: 0.1 is given twice"),
    (["rlhf", "--beta", "0", "--kl-target", "0.1"], "beta=0 is invalid with kl_target=0.1"),
    (["rlhf-sweep", "--kl-target", "0.1"], "betas='0.0,0.02,0.1,0.5' is invalid with kl_target=0.1"),
    (["rlhf", "--temperature", "0"], "temperature=0.0 is invalid"),
    (["rlhf", "--kl-estimator", "k2"], "kl_estimator='k2' is invalid: must be 'k1' or 'k3'"),
    (["rlhf", "--eval-top-k", "-1"], "eval_top_k=-1 is invalid"),
    (["rlhf", "--critic", "both"], "critic='both' is invalid: must be 'shared' or 'separate'"),
    (["rlhf", "--eval-top-p", "0"], "eval_top_p=0.0 is invalid"),
    (["rlhf", "--eval-top-p", "1.5"], "eval_top_p=1.5 is invalid"),
    (["rlhf", "--width", "65536"], "width=65536 needs about"),
    (["rlhf", "--batch", "100000000"], "batch=100000000 needs about"),
    (["rlhf", "--rm-pairs", "1000000000"], "rm_pairs=1000000000 needs about"),
    (["rlhf", "--eval-prompts", "1000000000"], "eval_prompts=1000000000 needs about"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_rlhf_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = run_cli([*argv, "--out", str(out), "--quiet"], capsys)
    assert status == 2
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() and not (tmp_path / "rlhf-stages").exists()


def test_rlhf_refuses_out_of_other_settings(tmp_path, capsys):
    """An --out holding a run of other settings that got somewhere (a summary or an A2C checkpoint) is
    refused; one that never reached its first checkpoint may be started again (a corrected rerun)."""
    import dataclasses
    import json

    from a2c_jax.rlhf.run import check_out

    out = tmp_path / "run"
    out.mkdir()
    other = {**dataclasses.asdict(RLHFConfig(beta=0.3)), "betas": [0.3]}
    (out / "config.json").write_text(json.dumps(other))
    check_out(out, {**dataclasses.asdict(RLHFConfig()), "betas": [0.05]})  # no progress: no refusal
    assert "never reached its first A2C checkpoint" in capsys.readouterr().err
    (out / "summary.json").write_text("{}")
    status, _, err = run_cli(["rlhf", "--out", str(out), "--quiet"], capsys)
    assert status == 2 and len(err) == 1
    assert "holds a run of other settings (beta=0.3 there, 0.05 now)" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "summary.json"]
    assert json.loads((out / "config.json").read_text()) == json.loads(json.dumps(other))  # unchanged


# Small end to end: ~1 minute on 2 cores. The reference, reward model and two betas share one run.
STAGES = ["--ref-steps", "200", "--rm-pairs", "2048", "--rm-steps", "200", "--eval-prompts", "128"]
E2E = [*STAGES, "--updates", "150", "--log-points", "5", "--quiet"]


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    import json

    from a2c_jax.cli import main

    root = tmp_path_factory.mktemp("rlhf")
    assert main(["rlhf-sweep", "--betas", "0.02,0.5", "--out", str(root / "sweep"), *E2E]) == 0
    return root, json.loads((root / "sweep" / "summary.json").read_text())


@pytest.mark.slow
def test_rlhf_end_to_end_beats_the_reference_and_beta_limits_kl(sweep_run):
    root, summary = sweep_run
    low, high = summary["members"]
    assert (low["beta"], high["beta"]) == (0.02, 0.5)
    # gold reward on 128 held-out prompts: the reference scores about -5 here
    assert low["final"]["gold"] > low["reference"]["gold"] + 1.0, low
    assert high["final"]["k1"] < low["final"]["k1"], (high["final"], low["final"])
    rm = summary["reward_model_stage"]
    assert rm["bt_loss_last"] < rm["bt_loss_first"] - 0.1, rm
    assert rm["held_out_gold_accuracy"] > 0.75, rm
    assert rm["held_out_label_accuracy"] > 0.7, rm
    out = root / "sweep"
    for name in ("config.json", "metrics.jsonl", "summary.json", "samples.json", "rlhf.png", "tradeoff.png"):
        assert (out / name).stat().st_size > 0, name
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * (1 + 5)  # update 0 and five log points, per beta


@pytest.mark.slow
def test_rlhf_second_run_reuses_the_stages(sweep_run, capsys):
    root, summary = sweep_run
    out = root / "again"
    status, stdout, err = run_cli(["rlhf", "--out", str(out), *STAGES, "--updates", "5", "--log-points", "1"], capsys)
    assert status == 0, err
    assert "reusing reference-" in stdout and "reusing reward_model-" in stdout, stdout
    import json

    again = json.loads((out / "summary.json").read_text())
    assert again["reward_model_stage"] == summary["reward_model_stage"]
    # the same reference sampled on the same held-out prompts (vmapped over 1 member instead of 2)
    before = summary["members"][0]["reference"]["gold"]
    assert again["members"][0]["reference"]["gold"] == pytest.approx(before, abs=0.05)


A2C_RUN = [*STAGES, "--updates", "60", "--log-points", "6", "--quiet"]


@pytest.fixture(scope="module")
def whole_run(sweep_run):
    """An uninterrupted run whose stages come from the sweep's cache (same stage settings)."""
    from a2c_jax.cli import main

    root, _ = sweep_run
    assert main(["rlhf", "--out", str(root / "whole"), *A2C_RUN]) == 0
    return root / "whole"


def lines(path):
    import json

    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_rlhf_interrupted_and_resumed_equals_uninterrupted(whole_run):
    """SIGINT to a running `a2c-jax rlhf` inside its A2C stage: exit 130 with a checkpoint and the
    command that continues it; `--resume` then ends with the records and results of the run that was
    never interrupted."""
    import json
    import signal

    from test_faults import finish, spawn, wait_for

    from a2c_jax.cli import main

    out = whole_run.parent / "interrupted"
    proc = spawn(["rlhf", "--out", str(out), *A2C_RUN])
    wait_for(lambda: (out / "metrics.jsonl").exists() and any(r["update"] > 0 for r in lines(out)), proc)
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 130, err
    assert f"checkpoint saved: continue with `a2c-jax rlhf --resume {out}`" in err.strip().splitlines()[-1]
    stopped_at = max(r["update"] for r in lines(out))
    assert 0 < stopped_at < 60, stopped_at
    assert main(["rlhf", "--resume", str(out), "--quiet"]) == 0
    assert lines(out) == lines(whole_run)
    done, again = (json.loads((d / "summary.json").read_text()) for d in (whole_run, out))
    assert done["members"] == again["members"]


def test_rlhf_resume_refuses_other_settings_and_missing_runs(whole_run, tmp_path, capsys):
    status, _, err = run_cli(["rlhf", "--resume", str(whole_run), "--lr", "0.5"], capsys)
    assert status == 2 and "--lr cannot be given with it" in err[0], err
    status, _, err = run_cli(["rlhf", "--resume", str(tmp_path / "none")], capsys)
    assert status == 2 and "holds no config.json: nothing to resume" in err[0], err


@pytest.mark.slow
def test_rlhf_divergence_is_reported_as_divergence(sweep_run, capsys):
    """A learning rate that overflows the policy: exit 1, one line naming divergence and the update,
    and the last good state checkpointed (not an internal error)."""
    root, _ = sweep_run
    out = root / "diverged"
    status, _, err = run_cli(["rlhf", "--out", str(out), *STAGES, "--updates", "4", "--log-points", "2",
                              "--lr", "1e8", "--quiet"], capsys)  # fmt: skip
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith("a2c-jax: training diverged: non-finite loss or parameters at update "), err
    assert "last good state (update " in err[0] and str(out / "checkpoints") in err[0]


def test_a_damaged_cached_stage_is_set_aside_and_retrained(tmp_path):
    """A cache entry that cannot be read is moved aside (kept) and the stage trained and cached anew."""
    from a2c_jax.rlhf.stages import cached_stage

    directory = tmp_path / "reference-abc"
    (directory / "3").mkdir(parents=True)
    (directory / "3" / "garbage").write_text("not a checkpoint")
    like = {"w": jnp.zeros(2)}
    trained = []

    def train():
        trained.append(1)
        return {"w": jnp.ones(2)}, {"r": 1}

    _, report = cached_stage(directory, {"s": 1}, like, train, 3, print)
    assert trained and report == {"r": 1}
    assert [p.name.split(".")[1][:7] for p in tmp_path.iterdir() if p.name != "reference-abc"] == ["corrupt"]
    again, report = cached_stage(directory, {"s": 1}, like, lambda: pytest.fail("retrained"), 3, print)
    np.testing.assert_array_equal(again["w"], [1.0, 1.0])


def test_torch_baseline_gae_agrees():
    """The PyTorch benchmark's token GAE (an independent loop) agrees with the library's."""
    torch = pytest.importorskip("torch", reason="the PyTorch baseline needs the [baselines] extra")
    from benchmarks.torch_rlhf import gae as torch_gae

    rng = np.random.default_rng(8)
    _, mask = random_responses(8)
    rewards = np.where(mask, rng.normal(size=(B, R)), 0.0).astype(np.float32)
    values = rng.normal(size=(B, R)).astype(np.float32)
    ours, _ = token_advantages(rewards, values, jnp.asarray(mask), 1.0, 0.95)
    theirs = torch_gae(torch.tensor(rewards), torch.tensor(values), torch.tensor(mask).float(), 0.95)
    np.testing.assert_allclose(theirs.numpy(), np.asarray(ours), atol=1e-5)


def test_torch_baseline_kv_cache_samples_like_full_recompute():
    """The PyTorch baseline's KV-cached sampler draws what its full-recompute sampler draws."""
    torch = pytest.importorskip("torch", reason="the PyTorch baseline needs the [baselines] extra")
    from benchmarks.torch_rlhf import TorchRLHF, sample_cached
    from benchmarks.torch_rlhf import sample as torch_sample

    torch.manual_seed(0)
    loop = TorchRLHF(8)
    prompts = loop.prompts()
    torch.manual_seed(1)
    full_tokens, full_mask = torch_sample(loop.policy, prompts, loop.r)
    torch.manual_seed(1)
    cached_tokens, cached_mask = sample_cached(loop.policy, prompts, loop.r)
    assert torch.equal(full_tokens, cached_tokens) and torch.equal(full_mask, cached_mask)
    assert bool(full_mask[:, 0].all()) and int(full_mask.sum()) > 8


def test_whitening_uses_valid_tokens_only():
    """Advantages are standardised over the valid tokens (unbiased std, as TRL's masked whitening and
    PyTorch's Tensor.std()); padding stays 0 and does not shift the statistics."""
    from a2c_jax.core.losses import standardize

    rng = np.random.default_rng(9)
    _, mask = random_responses(9)
    x = np.where(mask, rng.normal(size=(B, R)) * 3.0 + 1.0, 1e6).astype(np.float32)
    valid = x[mask].astype(np.float64)
    expected = np.where(mask, (x - valid.mean()) / (valid.std(ddof=1) + 1e-8), 0.0)
    np.testing.assert_allclose(np.asarray(standardize(jnp.asarray(x), jnp.asarray(mask))), expected, atol=1e-5)


@pytest.mark.parametrize(("kl", "expected_factor"), [(8.0, 1.2), (5.0, 1.0), (4.5, 0.9), (1.0, 0.8)])
def test_adaptive_kl_controller(kl, expected_factor):
    """Ziegler et al.'s controller: beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon; with
    n = horizon the proportional error is applied in full (target 5 here)."""
    from a2c_jax.rlhf.objective import adaptive_beta

    beta = adaptive_beta(jnp.float32(0.1), jnp.float32(kl), 5.0, 64.0, 64)
    np.testing.assert_allclose(float(beta), 0.1 * expected_factor, rtol=1e-6)
    half = adaptive_beta(jnp.float32(0.1), jnp.float32(kl), 5.0, 128.0, 64)
    np.testing.assert_allclose(float(half), 0.1 * (1 + (expected_factor - 1) / 2), rtol=1e-6)


def test_adaptive_kl_inside_the_update_raises_beta_when_kl_exceeds_target():
    """With --kl-target set, the compiled update carries beta in its state and adapts it."""
    rng = np.random.default_rng(10)
    model = TableLM(rng.normal(size=VOCAB_SIZE).astype(np.float32), np.zeros(VOCAB_SIZE, np.float32))
    rm = TableLM(np.zeros(VOCAB_SIZE, np.float32), rng.uniform(0, 5, size=VOCAB_SIZE).astype(np.float32))
    tokens = jnp.zeros((1, 3), jnp.int32)
    ref_params, rm_params = model.init(jax.random.PRNGKey(0), tokens), rm.init(jax.random.PRNGKey(0), tokens)
    config = RLHFConfig(
        prompt_digits=1, response_len=1, batch=256, lr=0.1, whiten=False, kl_target=0.01, kl_horizon=256
    )
    hparams = config.hparams()
    state = init_stage(ref_params, make_optimizer("adam", hparams, hparams.lr), jax.random.PRNGKey(1), 0.05)
    run = jax.jit(scan_chunk(a2c_step(model, config, Frozen(ref_params, rm_params), hparams), 30))
    state, metrics = run(state)
    betas = np.asarray(metrics["beta_now"])
    assert betas[0] == pytest.approx(0.05) and float(state.beta) > 0.05 * 1.1**5, betas
    assert np.all(np.diff(betas)[np.asarray(metrics["k1"])[:-1] > 0.012] > 0)


@pytest.mark.parametrize("flag", ["--out", "--stage-dir"])
def test_rlhf_paths_under_a_file_are_one_line_exit_2(flag, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    target = str(tmp_path / "afile" / "run")
    argv = ["rlhf", "--quiet", flag, target]
    if flag == "--stage-dir":
        argv += ["--out", str(tmp_path / "run")]
    status, _, err = run_cli(argv, capsys)
    assert status == 2 and len(err) == 1, err
    name = flag[2:].replace("-", "_")
    assert f"{name}={target!r} cannot be created" in err[0], err
    assert not (tmp_path / "run").exists()


def _changed(value):
    """Another value of the same type (bool flipped, numbers moved, strings and tuples extended)."""
    if isinstance(value, tuple):
        return (*value, "x")
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return value + "x"
    return value + 1 if isinstance(value, int) else value * 2 + 0.1


def test_every_field_of_a_stage_changes_its_cache_key(tmp_path):
    """A stage's cache entry is keyed by every config field it may read: changing any one of them gives
    another entry (no stale cache hit), changing a field only later stages read gives the same one, and
    the keys are inclusive: a field that is not declared A2C-only or reward-model-only is in both."""
    import dataclasses

    from a2c_jax.rlhf.config import A2C_ONLY, REWARD_MODEL_ONLY, stage_key
    from a2c_jax.rlhf.stages import stage_path

    base = RLHFConfig()
    names = [f.name for f in dataclasses.fields(RLHFConfig)]
    assert set(A2C_ONLY) | set(REWARD_MODEL_ONLY) < set(names)  # the declarations name real fields
    for stage in ("reference", "reward_model"):
        key = stage_path(tmp_path, stage, stage_key(base, stage))
        for name in names:
            other = dataclasses.replace(base, **{name: _changed(getattr(base, name))})
            moved = stage_path(tmp_path, stage, stage_key(other, stage)) != key
            later = name in A2C_ONLY or (stage == "reference" and name in REWARD_MODEL_ONLY)
            assert moved != later, (stage, name)


@pytest.mark.slow
def test_one_diverging_beta_keeps_the_others(sweep_run, capsys):
    """rlhf-sweep where one beta's policy diverges (a KL coefficient of 1e30 overflows its rewards): that
    beta is reported as diverged with its update, the other beta trains to its result, exit 0."""
    import json

    root, _ = sweep_run
    out = root / "one-diverges"
    argv = ["rlhf-sweep", "--betas", "0.02,1e30", "--out", str(out), *STAGES, "--updates", "4", "--log-points", "2",
            "--quiet"]  # fmt: skip
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    assert any("beta=1e+30 diverged at update" in line for line in err), err
    members = json.loads((out / "summary.json").read_text())["members"]
    assert members[0]["diverged_at"] is None and members[1]["diverged_at"] >= 1
    assert np.isfinite(members[0]["final"]["gold"]) and "beta 1e+30: diverged at update" in stdout
    assert {line["beta"] for line in lines(out) if line["update"] > 0} == {0.02}


@pytest.mark.slow
def test_a_separate_critic_starts_from_the_reward_model_and_its_loss_never_reaches_the_policy():
    """--critic separate: the trained parameters are {"policy", "critic"}, the critic starting as the
    reward model. One update with vf_coef 0 and one with vf_coef 1 give the same policy (the value loss
    reaches only the critic) and move the critic only with vf_coef 1; with the shared critic the same
    two updates give different policies (so the check can fail)."""
    import dataclasses

    from a2c_jax.core.optim import make_optimizer
    from a2c_jax.rlhf.train import Frozen, Trainable, a2c_step, init_stage, make_model

    config = RLHFConfig(width=32, heads=2, prompt_digits=3, response_len=6, context=10, batch=8, lr=1e-2)
    model = make_model(config)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, config.spec.seq_len), jnp.int32))
    frozen = Frozen(params, jax.tree.map(lambda x: x * 1.5 + 0.1, params))

    def one_update(separate: bool, vf_coef: float):
        hparams = dataclasses.replace(config, vf_coef=vf_coef).hparams()
        trainable = Trainable(separate_critic=separate)
        start = trainable.init(frozen, jax.random.PRNGKey(1))
        state = init_stage(start, make_optimizer("adam", hparams, hparams.lr), jax.random.PRNGKey(2), config.beta)
        new, _ = jax.jit(a2c_step(model, config, frozen, hparams, trainable=trainable))(state)
        return start, new.params

    start, without = one_update(True, 0.0)
    _, with_value = one_update(True, 1.0)
    assert set(start) == {"policy", "critic"}

    def leaves_equal(a, b):
        return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    assert leaves_equal(start["critic"], frozen.rm_params)
    assert leaves_equal(without["policy"], with_value["policy"])
    assert leaves_equal(without["critic"], start["critic"]) and not leaves_equal(with_value["critic"], start["critic"])
    _, shared_without = one_update(False, 0.0)
    _, shared_with = one_update(False, 1.0)
    assert not leaves_equal(shared_without, shared_with)
