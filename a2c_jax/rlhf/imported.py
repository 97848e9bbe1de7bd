"""What a run's A2C stage reads (`Inputs`), from either source, behind one interface: the digits task
(`digits_inputs`: the reference and reward model trained and cached) or an imported Hugging Face model
(`a2c-jax rlhf --model DIR`: `import_models` loads the policy, reference, reward (a reward-model
directory, preference pairs to train one, or a reward function) and prompts and checks them before
anything is written; `prepare_inputs` then trains the preference reward model). Also the memory
estimate of an imported model and the export of trained policies."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.config import ConfigError
from a2c_jax.rlhf.config import RLHFConfig
from a2c_jax.rlhf.lora import make_lora
from a2c_jax.rlhf.model import LanguageModel, Params
from a2c_jax.rlhf.stages import Log, StopFlag, train_stages
from a2c_jax.rlhf.task import decode
from a2c_jax.rlhf.train import Frozen, Pairs, Prompting, digits, from_prompts, make_model, text_pairs
from a2c_jax.runs.distributed import is_primary

if TYPE_CHECKING:
    from a2c_jax.rlhf.pretrained import PretrainedLM
    from a2c_jax.rlhf.rewards import TextReward

StageHow = tuple[bool, StopFlag, str]
"""How a stage trains: (quiet, the stop flag, the command that resumes the run)."""


@dataclasses.dataclass
class Inputs:
    """The models and data a run's A2C stage reads, whichever source made them: the policy's module
    `lm` (its parameters start as `frozen.ref_params`), the frozen reference and reward model, the
    prompts and special tokens (`task`), the stages' reports and how a sequence reads as text.

    Before `prepare_inputs`, `frozen.rm_params` is None while a reward model is still to be trained
    (the digits task's, or that of `preferences` from `rm_init`: its directory and starting params);
    it stays None when a reward function (`text_reward`) scores instead. `tokenizer` is None for the
    digits task (its `task.decode`); `eval_set` holds held-out evaluation prompts (`eval_prompts_file`:
    tokens int32 [N, P'], mask bool [N, P']), None when they are drawn like the training prompts."""

    lm: LanguageModel
    frozen: Frozen
    task: Prompting
    reports: dict[str, Any]
    tokenizer: Any = None
    preferences: Pairs | None = None
    rm_init: tuple[Path, Params] | None = None
    text_reward: TextReward | None = None
    eval_set: tuple[np.ndarray, np.ndarray] | None = None

    def decode(self, tokens: np.ndarray) -> str:
        """One sequence (int32 [L]) as text: the tokenizer's decoding without special tokens, or the
        digits task's."""
        if self.tokenizer is None:
            return decode([int(t) for t in tokens])
        return str(self.tokenizer.decode([int(t) for t in tokens], skip_special_tokens=True))

    def check(self) -> None:
        """Raise the reward function's failure, if any (`TextReward.check`)."""
        if self.text_reward is not None:
            self.text_reward.check()


def digits_inputs(config: RLHFConfig, model: LanguageModel | None = None) -> Inputs:
    """The digits task's inputs before its stages run: `model` (default `make_model(config)`), random
    digit prompts and the gold reward (`rlhf.task`); `prepare_inputs` trains the reference and the
    reward model (or reuses them from the stage cache)."""
    lm = model or make_model(config)
    return Inputs(lm, Frozen(None, None), digits(config.spec), {})


def import_models(config: RLHFConfig) -> Inputs:
    """Load `config.model` (policy and reference), the reward (`reward_model`, `preferences` or `reward`)
    and `config.prompts`; ConfigError (nothing written yet) for a directory, tokenizer, data file or
    function that cannot serve."""
    from a2c_jax.rlhf.data import load_preferences, load_prompts
    from a2c_jax.rlhf.hf import load_pretrained, vocab_of

    policy = load_pretrained(config.model)
    vocab = vocab_of(policy.tokenizer, config.stop_tokens)
    room = policy.config.max_len - config.response_len
    if room < 1:
        raise ConfigError(f"response_len={config.response_len} is invalid: the model holds {policy.config.max_len} "
                          "tokens, prompt included")  # fmt: skip
    prompts = load_prompts(config.prompts, policy.tokenizer, room)
    held_out = None
    if config.eval_prompts_file:
        held_out = load_prompts(config.eval_prompts_file, policy.tokenizer, room, limit=config.eval_prompts)
    reports: dict[str, Any] = {"reference_stage": {"model": config.model, "prompts": len(prompts.texts)}}
    rm_params, rm_init, pairs, reward = None, None, None, None
    if config.reward:
        from a2c_jax.rlhf.rewards import text_reward

        reward = text_reward(config.reward, policy.tokenizer, vocab, prompts.texts)
        reports["reward_model_stage"] = {"reward": config.reward}
    else:
        source = config.reward_model or config.model
        rm = load_pretrained(source, tokenizer=False) if config.reward_model else policy
        if dataclasses.replace(rm.config, hf=()) != dataclasses.replace(policy.config, hf=()):
            raise ConfigError(
                f"reward_model={config.reward_model!r} has another architecture than model={config.model!r}: the "
                "reward model must share the policy's (a separate value or reward architecture is not supported yet)"
            )
        if config.preferences:
            prefs = load_preferences(config.preferences, policy.tokenizer, policy.config.max_len)
            pairs = text_pairs(prefs.chosen, prefs.rejected, prefs.prompt_mask)
            init = dict(rm.params)
            if not config.reward_model:  # the policy's trunk with a zero head (as a fresh value head)
                init["scalar_head"] = jax.tree.map(jnp.zeros_like, rm.params["scalar_head"])
            rm_init = (Path(source), {"params": init})
        else:
            rm_params = {"params": rm.params}
            reports["reward_model_stage"] = {"reward_model": config.reward_model}
    lora = make_lora(config.lora_rank, config.lora_alpha, config.lora_targets, policy.config.family)
    if lora is not None and not lora.adapted({"params": policy.params}):
        raise ConfigError(
            f"lora_targets={config.lora_targets!r} is invalid: no module of {config.model!r} has that name"
        )
    task = from_prompts(prompts.tokens, prompts.mask, vocab, config.response_len, reward)
    reports["reference_stage"]["prompt_len"] = task.prompt_len
    frozen = Frozen({"params": policy.params}, rm_params)
    if held_out is not None:
        reports["reference_stage"]["eval_prompts_file"] = {"path": config.eval_prompts_file,
                                                           "prompts": len(held_out.texts)}  # fmt: skip
    eval_set = None if held_out is None else (held_out.tokens, held_out.mask)
    return Inputs(policy.module, frozen, task, reports, policy.tokenizer, pairs, rm_init, reward, eval_set)


def prepare_inputs(
    inputs: Inputs, config: RLHFConfig, out: Path, stage_dir: Path, keys: tuple[jax.Array, jax.Array],
    how: StageHow, log: Log,
) -> Inputs:  # fmt: skip
    """`inputs` with every model the A2C stage reads in place: the digits task's reference and reward
    model (`stages.train_stages`, keyed `keys`), or the reward model of an imported run's `preferences`
    (cached in `stage_dir`, with a copy in OUT/reward_model, a directory `--reward-model` takes); an
    imported run with nothing to train comes back unchanged."""
    if inputs.frozen.ref_params is None:
        frozen, reports = train_stages(inputs.lm, config, stage_dir, keys, *how, log)
        return dataclasses.replace(inputs, frozen=frozen, reports=reports)
    if inputs.preferences is None or inputs.rm_init is None:
        return inputs
    from a2c_jax.rlhf.hf import save_pretrained
    from a2c_jax.rlhf.stages import train_text_reward_model

    params, report = train_text_reward_model(inputs.lm, config, inputs.rm_init, inputs.preferences,
                                             inputs.task.vocab, stage_dir, how, log)  # fmt: skip
    lm, saved = cast("PretrainedLM", inputs.lm), out / "reward_model"
    if is_primary():
        save_pretrained(saved, lm, jax.device_get(params)["params"], inputs.tokenizer)
    reports = {**inputs.reports, "reward_model_stage": {**report, "saved": str(saved)}}
    return dataclasses.replace(inputs, frozen=inputs.frozen._replace(rm_params=params), reports=reports)


def export_policies(export: Path, imported: Inputs, policies: Params, betas: tuple[float, ...]) -> list[Path]:
    """Each beta's trained policy (`policies`: full parameters, a leading axis per beta; LoRA merged) as
    a directory `transformers` loads (EXPORT itself for one beta, EXPORT/beta_B for several)."""
    from a2c_jax.rlhf.hf import save_pretrained

    written = []
    for i, beta in enumerate(betas):
        params = jax.tree.map(lambda x, i=i: np.asarray(x[i]), policies)["params"]
        target = export if len(betas) == 1 else export / f"beta_{beta:g}"
        written.append(save_pretrained(target, cast("PretrainedLM", imported.lm), params, imported.tokenizer))
    return written


def imported_bytes(config: RLHFConfig, imported: Inputs, population: int) -> dict[str, int]:
    """`rlhf_bytes` for an imported model: float32 parameters held four times per policy (weights,
    gradient, Adam's two moments) plus the frozen reference and reward model; a sequence of L tokens
    keeps about layers x (16 x L x width + 3 x heads x L^2) floats of activations and 3 x L x vocab of
    logits (forward, log-softmax, their gradient)."""
    model = cast("PretrainedLM", imported.lm).config
    weights = 4 * sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(imported.frozen.ref_params))

    def per_sequence(prompt_len: int) -> int:
        seq = prompt_len + config.response_len
        activations = model.layers * (16 * seq * model.width + 3 * model.heads * seq * seq) + 3 * seq * model.vocab_size
        return 4 * activations

    eval_len = imported.task.prompt_len if imported.eval_set is None else imported.eval_set[0].shape[1]
    frozen = 2 * weights
    return {
        "model": frozen + 4 * weights * population,
        "batch": frozen + population * (4 * weights + config.batch * per_sequence(imported.task.prompt_len)),
        "eval_prompts": frozen + population * (weights + config.eval_prompts * per_sequence(eval_len)),
    }
