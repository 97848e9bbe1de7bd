"""The three compiled stages of the RLHF chain, as pure step functions scanned in chunks.

1. reference: maximum likelihood on `task.reference_corpus` (plausible, unaligned responses);
2. reward model: the same trunk with its scalar head read at the last valid token, trained with the
   Bradley-Terry loss on pairs sampled from the reference and labelled Bernoulli(sigmoid(r*_a - r*_b));
3. A2C: the policy starts as the reference (with a value head); each update samples a batch of
   responses, scores them with the reward model, shapes per-token rewards with the KL to the frozen
   reference, runs token GAE and takes one gradient step of the core's A2C objective.

Every stage uses the core's optax chain (`a2c_jax.core.optim.make_optimizer`, Adam with global-norm
clipping). `RLHFConfig` (rlhf/config.py) holds every setting; the traced ones of stage 3 ride in an `HParams`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from a2c_jax.config import ConfigError, HParams
from a2c_jax.core.distributions import categorical_entropy, categorical_log_prob
from a2c_jax.core.losses import masked_mean
from a2c_jax.core.optim import make_optimizer
from a2c_jax.rlhf.config import RLHFConfig
from a2c_jax.rlhf.lora import LoRA
from a2c_jax.rlhf.model import CausalTransformer, LanguageModel, Params
from a2c_jax.rlhf.objective import (
    TokenBatch,
    adaptive_beta,
    kl_estimates,
    token_advantages,
    token_objective,
    token_rewards,
)
from a2c_jax.rlhf.sampling import (
    DIGITS,
    Sampler,
    Samples,
    Vocab,
    ends_response,
    last_valid,
    lm_apply,
    make_sampler,
    response_outputs,
)
from a2c_jax.rlhf.sharding import host_values
from a2c_jax.rlhf.task import VOCAB_SIZE, TaskSpec, gold_reward, reference_corpus, response_mask, sample_prompts


def make_model(config: RLHFConfig) -> CausalTransformer:
    """The default language model of `config` (any `LanguageModel` may replace it)."""
    return CausalTransformer(VOCAB_SIZE, config.context, config.width, config.layers, config.heads)


def check_model(model: LanguageModel, params: Params, spec: TaskSpec) -> None:
    """ConfigError unless `model` maps tokens [B, L] to logits [B, L, VOCAB_SIZE] and values [B, L]."""
    tokens = jax.ShapeDtypeStruct((2, spec.seq_len), jnp.int32)
    try:
        logits, values = jax.eval_shape(model.apply, params, tokens)
    except Exception as err:  # flax raises many types for a sequence longer than the model holds
        raise ConfigError(f"the language model cannot read sequences of length {spec.seq_len}: {err}") from None
    if logits.shape != (2, spec.seq_len, VOCAB_SIZE) or values.shape != (2, spec.seq_len):
        raise ConfigError(
            f"the language model maps tokens (2, {spec.seq_len}) to logits {logits.shape} and values "
            f"{values.shape}: must be (2, {spec.seq_len}, {VOCAB_SIZE}) and (2, {spec.seq_len})"
        )


def adam(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
    """The core's chain (global-norm clip, then Adam) for the supervised stages."""
    return make_optimizer("adam", HParams(lr=lr, max_grad_norm=max_grad_norm, eps=1e-8), lr)


@struct.dataclass
class StageState:
    """What a stage carries between steps: params, optimizer state, PRNG key, step count, and the
    current KL coefficient (used by A2C only)."""

    params: Params
    opt_state: optax.OptState
    key: jax.Array
    step: jax.Array
    beta: jax.Array


def init_stage(params: Params, tx: optax.GradientTransformation, key: jax.Array, beta: float = 0.0) -> StageState:
    return StageState(params, tx.init(params), key, jnp.zeros((), jnp.int32), jnp.asarray(beta, jnp.float32))


def apply_gradients(state: StageState, grads: Params, tx: optax.GradientTransformation, key: jax.Array) -> StageState:
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return dataclasses.replace(
        state, params=optax.apply_updates(state.params, updates), opt_state=opt_state, key=key, step=state.step + 1
    )


StepFn = Callable[[StageState], tuple[StageState, dict[str, jax.Array]]]


def reference_step(model: LanguageModel, config: RLHFConfig) -> StepFn:
    """One maximum-likelihood step on a fresh batch of the reference corpus; metric: token NLL."""
    spec, tx = config.spec, adam(config.ref_lr, config.max_grad_norm)

    def step(state: StageState) -> tuple[StageState, dict[str, jax.Array]]:
        key, data_key = jax.random.split(state.key)
        tokens = reference_corpus(data_key, config.ref_batch, spec)
        actions = tokens[:, spec.prompt_len :]
        mask = response_mask(actions)

        def nll(params: Params) -> jax.Array:
            logits, _ = response_outputs(model, params, tokens, spec.prompt_len)
            return masked_mean(-categorical_log_prob(logits, actions), mask)

        loss, grads = jax.value_and_grad(nll)(state.params)
        return apply_gradients(state, grads, tx, key), {"nll": loss}

    return step


def sequence_score(
    model: LanguageModel,
    params: Params,
    tokens: jax.Array,
    prompt_len: int,
    vocab: Vocab = DIGITS,
    prompt_mask: jax.Array | None = None,
) -> jax.Array:
    """A reward model's score of full sequences [B, L]: its scalar head at the last valid token, [B]
    (`prompt_mask` [B, prompt_len] for left-padded prompts)."""
    _, scalar = lm_apply(model, params, tokens, prompt_mask, slice(prompt_len, None))
    return last_valid(scalar, response_mask(tokens[:, prompt_len:], vocab.ends, vocab.pad))


class Pairs(NamedTuple):
    """Preference data: two responses per prompt (tokens [N, L] each, the prompt in the first
    `prompt_len` columns), gold rewards [N] each (zeros when there is no gold reward), label [N] = 1.0
    when a was preferred, and the prompts' mask [N, prompt_len] when they are left-padded (else None)."""

    a: jax.Array
    b: jax.Array
    gold_a: jax.Array
    gold_b: jax.Array
    label: jax.Array
    prompt_mask: jax.Array | None = None


def text_pairs(chosen: Any, rejected: Any, prompt_mask: Any) -> Pairs:
    """Pairs of tokenized text (`a2c_jax.rlhf.data.Preferences`): a is the chosen response (label 1), b
    the rejected one, no gold reward."""
    zeros = jnp.zeros(len(chosen), jnp.float32)
    a, b = jnp.asarray(chosen, jnp.int32), jnp.asarray(rejected, jnp.int32)
    return Pairs(a, b, zeros, zeros, jnp.ones_like(zeros), jnp.asarray(prompt_mask, bool))


def preference_pairs(
    model: LanguageModel, ref_params: Params, key: jax.Array, count: int, spec: TaskSpec, kv_cache: bool = True
) -> Pairs:
    """`count` pairs of reference samples for the same prompts, labelled by the noisy gold preference
    (drawn Bernoulli(sigmoid(gold_a - gold_b)))."""
    k_prompt, k_a, k_b, k_label = jax.random.split(key, 4)
    prompts = sample_prompts(k_prompt, count, spec)
    sampler = make_sampler(model, kv_cache)
    a = sampler(ref_params, prompts, k_a, spec.response_len).tokens
    b = sampler(ref_params, prompts, k_b, spec.response_len).tokens
    gold_a = gold_reward(prompts, a[:, spec.prompt_len :])
    gold_b = gold_reward(prompts, b[:, spec.prompt_len :])
    label = jax.random.bernoulli(k_label, jax.nn.sigmoid(gold_a - gold_b)).astype(jnp.float32)
    return Pairs(a, b, gold_a, gold_b, label)


def pair_margin(model: LanguageModel, params: Params, pairs: Pairs, prompt_len: int, vocab: Vocab) -> jax.Array:
    """The reward model's score of a minus its score of b, [N]."""
    score_a = sequence_score(model, params, pairs.a, prompt_len, vocab, pairs.prompt_mask)
    return score_a - sequence_score(model, params, pairs.b, prompt_len, vocab, pairs.prompt_mask)


def bradley_terry_loss(
    model: LanguageModel, params: Params, pairs: Pairs, prompt_len: int, vocab: Vocab = DIGITS
) -> tuple[jax.Array, jax.Array]:
    """(mean -log P(label | s_a - s_b) with P(a > b) = sigmoid(s_a - s_b), accuracy against the labels)."""
    margin = pair_margin(model, params, pairs, prompt_len, vocab)
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(margin, pairs.label))
    return loss, jnp.mean((margin > 0) == (pairs.label > 0.5))


def reward_model_step(
    model: LanguageModel, config: RLHFConfig, pairs: Pairs, prompt_len: int | None = None, vocab: Vocab = DIGITS
) -> StepFn:
    """One Bradley-Terry step on a random minibatch of `pairs` (prompts of `prompt_len` tokens: by
    default the digits task's); metrics: loss and label accuracy."""
    tx, count = adam(config.rm_lr, config.max_grad_norm), pairs.label.shape[0]
    prompt_len = config.spec.prompt_len if prompt_len is None else prompt_len

    def step(state: StageState) -> tuple[StageState, dict[str, jax.Array]]:
        key, batch_key = jax.random.split(state.key)
        index = jax.random.randint(batch_key, (config.rm_batch,), 0, count)
        batch = jax.tree.map(lambda x: jnp.asarray(x)[index], pairs)  # host arrays in a multi-process run
        (loss, accuracy), grads = jax.value_and_grad(
            lambda p: bradley_terry_loss(model, p, batch, prompt_len, vocab), has_aux=True
        )(state.params)
        return apply_gradients(state, grads, tx, key), {"bt_loss": loss, "bt_accuracy": accuracy}

    return step


def pair_accuracy(
    model: LanguageModel, params: Params, pairs: Pairs, prompt_len: int, vocab: Vocab = DIGITS
) -> dict[str, jax.Array]:
    """Held-out reward-model quality: Bradley-Terry loss, accuracy against the labels, and accuracy
    against the gold ordering (pairs with equal gold reward left out; 0 when every pair is a tie)."""
    loss, label_accuracy = bradley_terry_loss(model, params, pairs, prompt_len, vocab)
    margin = pair_margin(model, params, pairs, prompt_len, vocab)
    gold = pairs.gold_a - pairs.gold_b
    decided = gold != 0
    gold_accuracy = jnp.sum(decided & ((margin > 0) == (gold > 0))) / jnp.maximum(jnp.sum(decided), 1)
    return {"bt_loss": loss, "label_accuracy": label_accuracy, "gold_accuracy": gold_accuracy}


@dataclasses.dataclass(frozen=True)
class Prompting:
    """Where A2C's prompts come from and which tokens are special.

    `draw(key, batch) -> (prompts int32 [B, prompt_len], prompt_mask bool [B, prompt_len] or None)`;
    `gold(prompts, responses) -> [B]`, a ground-truth reward reported beside the score (None: the
    score is reported as gold); `reward(prompts, responses, prompt_mask) -> [B]`, when given, is the
    score itself (a reward function, e.g. of the decoded text: `a2c_jax.rlhf.rewards`) in place of
    the reward model. `digits(spec)` is the built-in task; `from_prompts` a table of tokenized text
    prompts (`a2c_jax.rlhf.data.load_prompts`) drawn uniformly with replacement.
    """

    vocab: Vocab
    prompt_len: int
    response_len: int
    draw: Callable[[jax.Array, int], tuple[jax.Array, jax.Array | None]]
    gold: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    reward: Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array] | None = None


def digits(spec: TaskSpec) -> Prompting:
    """The digits task (`a2c_jax.rlhf.task`): random digit prompts, the programmatic gold reward."""
    return Prompting(DIGITS, spec.prompt_len, spec.response_len, lambda k, b: (sample_prompts(k, b, spec), None),
                     gold_reward)  # fmt: skip


def from_prompts(
    tokens: Any,
    mask: Any,
    vocab: Vocab,
    response_len: int,
    reward: Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array] | None = None,
) -> Prompting:
    """Left-padded text prompts (tokens int32 [N, P], mask bool [N, P]), drawn uniformly per batch;
    `reward` scores responses in place of a reward model (see `Prompting`)."""
    # a multi-process run's programs close over host values
    table, table_mask = host_values((jnp.asarray(tokens, jnp.int32), jnp.asarray(mask, bool)))

    def draw(key: jax.Array, batch: int) -> tuple[jax.Array, jax.Array | None]:
        index = jax.random.randint(key, (batch,), 0, table.shape[0])
        return jnp.asarray(table)[index], jnp.asarray(table_mask)[index]

    return Prompting(vocab, int(table.shape[1]), response_len, draw, reward=reward)


class Frozen(NamedTuple):
    """The frozen models A2C reads: reference (logits) and reward model (scalar head; None when the
    task's `reward` function scores instead)."""

    ref_params: Params
    rm_params: Params | None


def judge(
    model: LanguageModel,
    frozen: Frozen,
    samples: Samples,
    prompts: jax.Array,
    task: Prompting,
    logits: jax.Array,
    values: jax.Array,
    temperature: float = 1.0,
    prompt_mask: jax.Array | None = None,
    missing_eos_penalty: float = 0.0,
) -> dict[str, jax.Array]:
    """Measure sampled responses against the frozen models, given the policy's outputs on them
    (logits [B, R, V], values [B, R] from `response_outputs` at `temperature`; the reference is read
    at the same temperature, so the KL compares the two distributions the tokens could come from).

    Returns per-sequence arrays [B] (score, gold, k1, k3, length, eos, entropy per token) and the
    per-token arrays the A2C update needs ([B, R]: log_prob, ref_log_prob, values, mask; tokens [B, L]).
    """
    p, vocab = task.prompt_len, task.vocab
    actions, mask = samples.tokens[:, p:], samples.mask
    ref_logits, _ = response_outputs(model, frozen.ref_params, samples.tokens, p, temperature, vocab, prompt_mask)
    log_prob = categorical_log_prob(logits, actions)
    ref_log_prob = categorical_log_prob(ref_logits, actions)
    k1, k3 = kl_estimates(log_prob, ref_log_prob, mask)
    length = jnp.sum(mask, axis=1)
    entropy = jnp.sum(jnp.where(mask, categorical_entropy(logits), 0.0), axis=1) / length
    ended = jnp.any(mask & ends_response(actions, vocab), axis=1)
    if task.reward is not None:
        score = task.reward(prompts, actions, prompt_mask)
    else:
        score = sequence_score(model, frozen.rm_params, samples.tokens, p, vocab, prompt_mask)
    if missing_eos_penalty:  # the score a response that never ended is rewarded with
        score = score - missing_eos_penalty * (~ended).astype(score.dtype)
    return {
        "tokens": samples.tokens,
        "log_prob": log_prob,
        "ref_log_prob": ref_log_prob,
        "values": values,
        "mask": mask,
        "score": score,
        "gold": task.gold(prompts, actions) if task.gold is not None else score,
        "k1": k1,
        "k3": k3,
        "length": length.astype(jnp.float32),
        "eos": ended.astype(jnp.float32),
        "entropy": entropy,
    }


def score_samples(
    model: LanguageModel,
    params: Params,
    frozen: Frozen,
    prompts: jax.Array,
    key: jax.Array,
    task: Prompting,
    sampler: Sampler | None = None,
    temperature: float = 1.0,
    prompt_mask: jax.Array | None = None,
    missing_eos_penalty: float = 0.0,
) -> dict[str, jax.Array]:
    """Sample responses to prompts [B, P] from `params` at `temperature` and `judge` them (see there);
    a given `sampler` must sample at that temperature with the task's vocabulary."""
    sampler = sampler or make_sampler(model, temperature=temperature, vocab=task.vocab)
    samples = sampler(params, prompts, key, task.response_len, prompt_mask)
    logits, values = response_outputs(
        model, params, samples.tokens, task.prompt_len, temperature, task.vocab, prompt_mask
    )
    return judge(model, frozen, samples, prompts, task, logits, values, temperature, prompt_mask, missing_eos_penalty)


SEQUENCE_METRICS = ("score", "gold", "k1", "k3", "length", "eos", "entropy")


@dataclasses.dataclass(frozen=True)
class Trainable:
    """What A2C trains, and how its parameters make the policy and the critic: every weight of the
    policy, its value head the critic (the default); `lora`: adapters merged into the reference's
    weights (`a2c_jax.rlhf.lora`); `separate_critic`: a value model of its own, {"policy": ...,
    "critic": ...}, whose scalar head gives the values, started from the reward model (TRL's and
    OpenRLHF's default; from the reference when a reward function scores)."""

    lora: LoRA | None = None
    separate_critic: bool = False

    def init(self, frozen: Frozen, key: jax.Array) -> Params:
        """The trained parameters at the start: the policy is the reference."""
        policy = frozen.ref_params if self.lora is None else self.lora.init(frozen.ref_params, key)
        if not self.separate_critic:
            return policy
        critic = frozen.rm_params if frozen.rm_params is not None else frozen.ref_params
        return {"policy": policy, "critic": critic}

    def policy(self, params: Params, frozen: Frozen) -> Params:
        """The policy's full parameters."""
        own = params["policy"] if self.separate_critic else params
        return own if self.lora is None else self.lora.merge(frozen.ref_params, own)

    def critic(self, params: Params) -> Params | None:
        """The value model's parameters, or None when the policy's value head is the critic."""
        return params["critic"] if self.separate_critic else None


def a2c_step(
    model: LanguageModel,
    config: RLHFConfig,
    frozen: Frozen,
    hparams: HParams,
    task: Prompting | None = None,
    shard: Callable[[jax.Array], jax.Array] | None = None,
    trainable: Trainable | None = None,
) -> StepFn:
    """One A2C-RLHF update: draw prompts, sample a batch, shape per-token rewards, token GAE, one
    gradient step. `hparams` leaves may be traced (a population of settings); beta lives in the state.
    `task` gives the prompts and the special tokens (default: the digits task of `config`); `shard`
    constrains the prompts' batch axis to a device layout (`RLHFLayout.shard_batch`), which every
    array of the update then follows. `trainable` says what the state's parameters are (every weight
    of the policy by default; LoRA adapters; a separate critic)."""
    trainable = trainable or Trainable()
    task = task or digits(config.spec)
    tx, temperature, p = make_optimizer("adam", hparams, hparams.lr), config.temperature, task.prompt_len
    sampler = make_sampler(model, config.kv_cache, temperature, task.vocab)

    def step(state: StageState) -> tuple[StageState, dict[str, jax.Array]]:
        key, prompt_key, sample_key = jax.random.split(state.key, 3)
        prompts, prompt_mask = task.draw(prompt_key, config.batch)
        if shard is not None:
            prompts = shard(prompts)
            prompt_mask = None if prompt_mask is None else shard(prompt_mask)
        samples = sampler(trainable.policy(state.params, frozen), prompts, sample_key, task.response_len, prompt_mask)

        def outputs(q: Params) -> tuple[jax.Array, jax.Array]:
            logits, values = response_outputs(
                model, trainable.policy(q, frozen), samples.tokens, p, temperature, task.vocab, prompt_mask
            )
            critic = trainable.critic(q)
            if critic is not None:  # the value model's scalar head, not the policy's
                _, values = response_outputs(model, critic, samples.tokens, p, temperature, task.vocab, prompt_mask)
            return logits, values

        # one forward pass of the policy serves the advantages (values) and the gradient (its VJP)
        (logits, values), pullback = jax.vjp(outputs, state.params)
        out = judge(
            model, frozen, samples, prompts, task, logits, values, temperature, prompt_mask, config.missing_eos_penalty
        )
        rewards = token_rewards(
            out["score"], out["log_prob"], out["ref_log_prob"], out["mask"], state.beta, config.kl_estimator
        )
        advantage, target = token_advantages(rewards, out["values"], out["mask"], hparams.gamma, hparams.gae_lambda)
        batch = TokenBatch(out["tokens"], advantage, target, out["mask"])
        (_, loss), cotangents = jax.value_and_grad(token_objective, argnums=(0, 1), has_aux=True)(
            logits, values, batch, p, hparams.vf_coef, hparams.ent_coef, config.whiten
        )
        (grads,) = pullback(cotangents)
        new_state = apply_gradients(state, grads, tx, key)
        kl = jnp.mean(out["k1"])
        if config.kl_target > 0:
            beta = adaptive_beta(state.beta, kl, config.kl_target, config.kl_horizon, config.batch)
            new_state = dataclasses.replace(new_state, beta=beta)
        metrics = {name: jnp.mean(out[name]) for name in SEQUENCE_METRICS}
        metrics |= {
            "loss": loss.loss,
            "policy_loss": loss.policy_loss,
            "value_loss": loss.value_loss,
            "explained_variance": loss.explained_variance,
            "grad_norm": optax.tree.norm(grads),
            "beta_now": state.beta,
        }
        return new_state, metrics

    return step


def scan_chunk(step: StepFn, length: int) -> Callable[[StageState], tuple[StageState, dict[str, jax.Array]]]:
    """`length` steps as one lax.scan; metrics stacked [length]."""

    def run(state: StageState) -> tuple[StageState, dict[str, jax.Array]]:
        return jax.lax.scan(lambda s, _: step(s), state, None, length=length)

    return run


def fori_chunk(step: StepFn, length: int) -> Callable[[StageState, jax.Array], tuple[StageState, dict[str, jax.Array]]]:
    """run(state, n) -> (state after n <= `length` steps, metrics stacked [length], rows from n on zero):
    one compiled program serves every chunk of the host loop, a shorter last one included (n may be
    traced)."""

    def run(state: StageState, n: jax.Array) -> tuple[StageState, dict[str, jax.Array]]:
        shapes = jax.eval_shape(step, state)[1]
        buffer = jax.tree.map(lambda x: jnp.zeros((length, *x.shape), x.dtype), shapes)

        def body(
            i: jax.Array, carry: tuple[StageState, dict[str, jax.Array]]
        ) -> tuple[StageState, dict[str, jax.Array]]:
            s, buf = carry
            s, m = step(s)
            return s, jax.tree.map(lambda b, x: b.at[i].set(x), buf, m)

        return jax.lax.fori_loop(0, n, body, (state, buffer))

    return run
