"""Settings of the RLHF chain: frozen dataclasses (also the flags of `a2c-jax rlhf`); no JAX imported."""

from __future__ import annotations

import dataclasses

from a2c_jax.config import ConfigError, HParams, check_int, check_number, check_seed


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Static shapes of the task: prompt [B, 1 + prompt_digits], response [B, response_len]."""

    prompt_digits: int = 4
    response_len: int = 12

    @property
    def prompt_len(self) -> int:
        return 1 + self.prompt_digits

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.response_len


@dataclasses.dataclass(frozen=True)
class RLHFConfig:
    """Every setting of the RLHF chain (reference, reward model, A2C).

    Attributes:
        seed: seed of the whole chain (corpus, pairs, initialisation, sampling).
        prompt_digits: digits in a prompt (after BOS).
        response_len: most tokens in a response (EOS included).
        context: positions the model can hold; must be >= 1 + prompt_digits + response_len.
        width: transformer width.
        layers: transformer blocks.
        heads: attention heads (must divide width).
        ref_steps: maximum-likelihood steps of the reference model.
        ref_batch: sequences per reference step.
        ref_lr: Adam learning rate of the reference model.
        rm_pairs: preference pairs sampled from the reference to train the reward model.
        rm_steps: Bradley-Terry steps of the reward model.
        rm_batch: pairs per reward-model step.
        rm_lr: Adam learning rate of the reward model.
        updates: A2C updates of the policy (one gradient step each).
        batch: prompts (one response each) per A2C update.
        lr: Adam learning rate of the policy.
        beta: KL penalty coefficient (initial value when kl_target is set).
        gamma: discount over tokens (1 in RLHF practice).
        gae_lambda: GAE lambda over tokens; 0 is the one-step TD advantage r + V(s') - V(s).
        vf_coef: weight of the value loss.
        ent_coef: weight of the entropy bonus.
        max_grad_norm: global gradient-norm clip (every stage).
        whiten: standardise advantages over the valid tokens of a batch.
        kl_target: target sequence KL of the adaptive controller (0 = fixed beta).
        kl_horizon: horizon (in sequences) of the adaptive controller.
        kl_estimator: the per-token KL in the reward: "k1" (log pi - log pi_ref, unbiased, can be
            negative) or "k3" ((r - 1) - log r, r = pi_ref / pi: unbiased for the sequence KL, never
            negative). The adaptive controller reads the sequence k1 either way.
        missing_eos_penalty: subtracted from the reward model's score of a response that reaches
            response_len tokens without EOS or a stop token (0: none), in training and in the reported
            score.
        stop_tokens: with `model`, texts the model's tokenizer makes one token each (e.g. a newline):
            a response ends at the first of them as at EOS (the token kept, scored there by the
            reward model; a reward function sees the text before it).
        temperature: sampling temperature of the policy's responses (training and evaluation); the
            log-probabilities of the loss and of the KL penalty, the reference's included, are taken
            at the same temperature, so the policy at the reference scores KL 0 at any temperature.
        eval_top_k: evaluation samples are drawn from the policy's top_k most likely tokens (0: all);
            training always samples the whole distribution.
        eval_top_p: evaluation samples are drawn from the smallest set of tokens whose probability
            reaches top_p (nucleus sampling; 1: all), after eval_top_k.
        kv_cache: sample with a KV cache when the model has a decode mode (False: recompute the whole
            sequence at every position; same samples, slower).
        eval_prompts: held-out prompts scored at each log point (with `eval_prompts_file`, at most this
            many of its prompts, the first ones).
        eval_prompts_file: with `model`, a JSONL file of {"prompt": ...} lines that the evaluation reads
            in place of draws from `prompts` (held-out prompts the policy never trains on).
        log_points: evaluations (and metrics lines) during A2C.
        model: a Hugging Face model directory (`save_pretrained`: config.json, safetensors, tokenizer;
            GPT-2 or Llama family): the policy and the frozen reference start from its weights, and
            no reference or reward model is trained ("" = the built-in digits task).
        prompts: with `model`, a JSONL file of {"prompt": ...} lines, tokenized by the model's tokenizer.
        reward_model: with `model`, a directory of the same architecture whose scalar head scores a
            response (a sequence-classification checkpoint's `score` head, or `value_head.safetensors`).
        preferences: with `model`, a JSONL file of {"prompt", "chosen", "rejected"} pairs: a
            Bradley-Terry reward model is trained on them (rm_steps, rm_batch, rm_lr; a tenth held out)
            from `reward_model` when given, else from the model's trunk with a zero head.
        critic: "shared" (the policy's value head on its own trunk) or "separate" (a value model of its
            own, started from the reward model, as TRL and OpenRLHF do).
        lora_rank: with `model`, train LoRA adapters of this rank (and the value head) instead of every
            weight (0: full fine-tuning); the base weights are the reference's, exported merged.
        lora_alpha: LoRA's scale numerator (the update is alpha / rank x A B).
        lora_targets: comma-separated module names whose kernels get adapters ("" = the attention
            projections: c_attn, c_proj, c_fc for GPT-2; q_proj, k_proj, v_proj, o_proj for Llama).
        reward: with `model`, MODULE:FUNCTION or FILE.py:FUNCTION, a Python function of the decoded
            (prompts, responses) returning one number per response, used in place of a reward model.
    """

    seed: int = 0
    prompt_digits: int = 4
    response_len: int = 12
    context: int = 32
    width: int = 64
    layers: int = 2
    heads: int = 4
    ref_steps: int = 300
    ref_batch: int = 128
    ref_lr: float = 1e-3
    rm_pairs: int = 4096
    rm_steps: int = 300
    rm_batch: int = 128
    rm_lr: float = 1e-3
    updates: int = 300
    batch: int = 64
    lr: float = 3e-4
    beta: float = 0.05
    gamma: float = 1.0
    gae_lambda: float = 0.95
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 1.0
    whiten: bool = True
    kl_target: float = 0.0
    kl_horizon: float = 10000.0
    kl_estimator: str = "k1"
    missing_eos_penalty: float = 0.0
    stop_tokens: tuple[str, ...] = ()
    temperature: float = 1.0
    eval_top_k: int = 0
    eval_top_p: float = 1.0
    kv_cache: bool = True
    eval_prompts: int = 256
    eval_prompts_file: str = ""
    log_points: int = 20
    model: str = ""
    prompts: str = ""
    reward_model: str = ""
    preferences: str = ""
    reward: str = ""
    critic: str = "shared"
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: str = ""

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(self.prompt_digits, self.response_len)

    def validate(self) -> RLHFConfig:
        """Raise ConfigError (field, value, what is allowed) for the first bad setting."""
        check_seed("seed", self.seed)
        positive_ints = [
            "prompt_digits",
            "response_len",
            "context",
            "width",
            "layers",
            "heads",
            "ref_steps",
            "ref_batch",
            "rm_steps",
            "eval_prompts",
            "log_points",
            "updates",
        ]
        for name in positive_ints:
            check_int(name, getattr(self, name))
        for name in ("batch", "rm_batch", "rm_pairs"):
            check_int(name, getattr(self, name), 2)
        if self.spec.seq_len > self.context:
            most = self.context - self.spec.prompt_len
            raise ConfigError(
                f"response_len={self.response_len} is invalid: prompt (1 + prompt_digits={self.prompt_digits}) "
                f"plus response must fit context={self.context}, so response_len <= {most}"
            )
        if self.width % self.heads:
            raise ConfigError(f"heads={self.heads} is invalid: must divide width={self.width}")
        for name in ("ref_lr", "rm_lr", "lr", "max_grad_norm", "kl_horizon", "temperature"):
            check_number(name, getattr(self, name), 0.0, low_open=True)
        for name in ("beta", "vf_coef", "ent_coef", "kl_target", "missing_eos_penalty"):
            check_number(name, getattr(self, name), 0.0)
        if self.kl_estimator not in ("k1", "k3"):
            raise ConfigError(f"kl_estimator={self.kl_estimator!r} is invalid: must be 'k1' or 'k3'")
        if self.kl_target > 0 and self.beta == 0:
            raise ConfigError(
                f"beta=0 is invalid with kl_target={self.kl_target}: the adaptive controller multiplies beta, so "
                "it would stay 0; give beta > 0 as the starting coefficient, or kl_target=0 for a fixed beta"
            )
        if self.model and not self.prompts:
            raise ConfigError(f"prompts='' is invalid with model={self.model!r}: give --prompts")
        if self.model and not (self.reward_model or self.preferences or self.reward):
            raise ConfigError(
                f"reward_model='' is invalid with model={self.model!r}: give --reward-model, --preferences or --reward"
            )
        if self.reward and (self.reward_model or self.preferences):
            other = "reward_model" if self.reward_model else "preferences"
            raise ConfigError(
                f"reward={self.reward!r} is invalid with {other}={getattr(self, other)!r}: a reward function replaces "
                "the reward model; give one of them"
            )
        for given in ("prompts", "reward_model", "preferences", "reward", "stop_tokens", "eval_prompts_file"):
            if getattr(self, given) and not self.model:
                raise ConfigError(f"{given}={getattr(self, given)!r} needs --model (the digits task makes its own)")
        if "" in self.stop_tokens:
            raise ConfigError("stop_tokens='' is invalid: a stop token must be a non-empty text, e.g. a newline")
        check_int("eval_top_k", self.eval_top_k, 0)
        if self.critic not in ("shared", "separate"):
            raise ConfigError(f"critic={self.critic!r} is invalid: must be 'shared' or 'separate'")
        check_int("lora_rank", self.lora_rank, 0)
        check_number("lora_alpha", self.lora_alpha, 0.0, low_open=True)
        if self.lora_rank and not self.model:
            raise ConfigError(f"lora_rank={self.lora_rank} needs --model (LoRA adapts an imported model)")
        check_number("eval_top_p", self.eval_top_p, 0.0, 1.0, low_open=True)
        check_number("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_number("gamma", self.gamma, 0.0, 1.0, low_open=True)
        return self

    def hparams(self) -> HParams:
        """The traced A2C hyperparameters (the same HParams the environment trainer uses)."""
        return HParams(
            lr=self.lr,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            ent_coef=self.ent_coef,
            vf_coef=self.vf_coef,
            max_grad_norm=self.max_grad_norm,
            eps=1e-8,
        ).as_arrays()


A2C_ONLY = ("updates", "batch", "lr", "beta", "gamma", "gae_lambda", "vf_coef", "ent_coef", "whiten", "kl_target",
            "kl_horizon", "kl_estimator", "missing_eos_penalty", "stop_tokens", "temperature", "eval_prompts",
            "eval_prompts_file", "eval_top_k", "eval_top_p", "log_points", "critic", "lora_rank", "lora_alpha",
            "lora_targets")  # fmt: skip
"""Fields that only the A2C stage and the evaluation read: in no cached stage's key."""
REWARD_MODEL_ONLY = ("rm_pairs", "rm_steps", "rm_batch", "rm_lr", "kv_cache")
"""Fields that the reward model reads and the reference does not (kv_cache: how its pairs are sampled)."""
STAGES = ("reference", "reward_model")


def stage_key(config: RLHFConfig, stage: str) -> dict[str, object]:
    """The settings that key a cached stage: every field of the config except those declared to be read
    only by later stages. Inclusive by default, so a field added to RLHFConfig enters every key (at
    worst a needless retrain, never a stale cache hit); tests check that each field in a key changes it."""
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}: must be one of {', '.join(STAGES)}")
    excluded = set(A2C_ONLY) | (set(REWARD_MODEL_ONLY) if stage == "reference" else set())
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in excluded}
