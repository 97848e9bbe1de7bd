"""The host side of `a2c-jax rlhf` and `a2c-jax rlhf-sweep`: stages, caching, evaluation and outputs.

A run is one population of A2C policies, one per beta (a single run is a population of one), trained
as one vmapped program after the reference and reward model. Those two stages are cached under
`stage_dir`, keyed by a hash of the settings they depend on, so a second run (another beta, another
A2C setting) reuses them. Outputs in `out`: config.json, metrics.jsonl (a line per log point and
beta), summary.json, samples.json (responses before and after), rlhf.png, and for several betas
tradeoff.png; the policies' final state as an orbax checkpoint in out/checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.config import ConfigError
from a2c_jax.core.optim import make_optimizer
from a2c_jax.rlhf.imported import (
    Inputs,
    digits_inputs,
    export_policies,
    import_models,
    imported_bytes,
    prepare_inputs,
)
from a2c_jax.rlhf.lora import make_lora
from a2c_jax.rlhf.model import LanguageModel, Params
from a2c_jax.rlhf.sampling import Truncation, make_sampler
from a2c_jax.rlhf.sharding import host_values, placed
from a2c_jax.rlhf.stages import HELD_OUT_PAIRS, StopFlag, first_nonfinite_row, warn
from a2c_jax.rlhf.task import VOCAB_SIZE, decode
from a2c_jax.rlhf.train import (
    SEQUENCE_METRICS,
    RLHFConfig,
    StageState,
    Trainable,
    a2c_step,
    fori_chunk,
    init_stage,
    score_samples,
)
from a2c_jax.runs.checkpoint import CheckpointWriter, latest_step, restore_checkpoint
from a2c_jax.runs.distributed import any_process, barrier, is_primary
from a2c_jax.runs.lock import locked
from a2c_jax.runs.loop import Job, chunk_length, graceful_stop, run_loop
from a2c_jax.runs.records import MetricsLog, count_bar, read_json, write_json_atomic

if TYPE_CHECKING:
    from a2c_jax.rlhf.sharding import RLHFLayout

SAMPLE_PROMPTS = 6
Log = Callable[[str], None]


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 when either side is constant."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):  # ties share their mean rank
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def summarize_samples(out: dict[str, np.ndarray], prompt_len: int) -> dict[str, float]:
    """Means of the per-sequence metrics of one evaluation batch, plus the fraction of distinct
    responses and the reward model's rank correlation with the gold reward."""
    summary = {name: float(np.mean(out[name])) for name in SEQUENCE_METRICS}
    responses = {tuple(row) for row in np.asarray(out["tokens"])[:, prompt_len:].tolist()}
    summary["distinct"] = len(responses) / len(out["tokens"])
    summary["rank_correlation"] = rank_correlation(out["score"], out["gold"])
    return summary


Decoder = Callable[[Any], str]
"""A sequence's tokens [L] as readable text."""


def sample_texts(out: dict[str, np.ndarray], count: int, decoder: Decoder = decode) -> list[dict[str, Any]]:
    return [
        {"text": decoder(out["tokens"][i]), "gold": float(out["gold"][i]), "score": float(out["score"][i])}
        for i in range(min(count, len(out["tokens"])))
    ]


def check_out(out: Path, record: dict[str, Any]) -> None:
    """ConfigError when `out` holds a run of other settings (naming the first that differs). A run that
    never reached its first A2C checkpoint (it failed or was stopped early) holds nothing worth keeping:
    a run of other settings may start there again."""
    path = out / "config.json"
    if not path.exists():
        return
    held = read_json(path, "out")
    if held == record:
        return
    if latest_step(out / "checkpoints") is None and not (out / "summary.json").exists():
        warn(f"{str(out)!r} holds a run that never reached its first A2C checkpoint: starting it again")
        return
    if not isinstance(held, dict):
        raise ConfigError(f"out={str(out)!r} holds a config.json that is not an RLHF run's; choose another --out")
    differs = sorted(k for k in set(held) | set(record) if held.get(k) != record.get(k))
    name = differs[0]
    raise ConfigError(
        f"out={str(out)!r} holds a run of other settings ({name}={held.get(name)!r} there, {record.get(name)!r} "
        "now); choose another --out"
    )


def read_record(out: Path) -> tuple[RLHFConfig, tuple[float, ...]]:
    """The (config, betas) saved in OUT/config.json by an earlier run; ConfigError saying what is wrong."""
    from a2c_jax.config import coerce_dataclass_fields

    path = out / "config.json"
    if not path.is_file():
        raise ConfigError(f"resume={str(out)!r} holds no config.json: nothing to resume")
    record = read_json(path, "resume")
    if not isinstance(record, dict) or "betas" not in record:
        raise ConfigError(f"{str(path)!r} is not an RLHF run's config.json: nothing to resume")
    fields = {k: v for k, v in record.items() if k != "betas"}
    config = RLHFConfig(**coerce_dataclass_fields(RLHFConfig, fields, f"{str(path)!r}")).validate()
    betas = record["betas"]
    if not isinstance(betas, list) or not betas or not all(isinstance(b, int | float) for b in betas):
        raise ConfigError(f"{str(path)!r}: betas={betas!r} is invalid: must be a list of numbers")
    return config, check_betas(tuple(float(b) for b in betas))


def run_rlhf(
    config: RLHFConfig,
    out: Path,
    stage_dir: Path,
    betas: tuple[float, ...] | None = None,
    quiet: bool = False,
    log: Log = print,
    model: LanguageModel | None = None,
    resume: bool = False,
    command: str = "rlhf",
    export: Path | None = None,
    layout: RLHFLayout | None = None,
) -> dict[str, Any]:
    """The whole chain: reference -> reward model -> A2C for each beta (one vmapped program), every
    stage through the host loop (`runs.loop`): SIGINT/SIGTERM checkpoint and stop (`Interrupted`), a
    non-finite loss stops with the last good state kept (`Diverged`), and `resume=True` continues an
    interrupted run in `out` (`a2c-jax {command} --resume OUT`) to the result of an uninterrupted one.

    With `config.model` the policy and reference come from that Hugging Face directory, the reward
    model from `config.reward_model` and the prompts from `config.prompts` (no stage is trained);
    `export` then receives each trained policy as a directory `transformers` loads. `layout`
    (`rlhf.sharding.rlhf_layout`) splits each A2C update over several devices.

    Returns the summary (also written to out/summary.json)."""
    config.validate()
    betas = check_betas(tuple(betas) if betas else (config.beta,))
    inputs = import_models(config) if config.model else digits_inputs(config, model)
    check_rlhf_fits(config, len(betas), imported_bytes(config, inputs, len(betas)) if config.model else None)
    record = json.loads(json.dumps({**dataclasses.asdict(config), "betas": list(betas)}))  # as config.json reads back
    check_out(out, record)
    if resume and (out / "summary.json").exists() and latest_step(out / "checkpoints") == config.updates:
        log(f"{str(out)!r} has already finished ({config.updates} updates); nothing to do")
        return dict(read_json(out / "summary.json", "summary"))
    ref_key, rm_key, a2c_key, eval_key = jax.random.split(jax.random.PRNGKey(config.seed), 4)
    started = time.perf_counter()
    with locked(out, "out", is_primary()), graceful_stop(warn) as stop_requested:  # one writer per --out
        if is_primary():
            write_json_atomic(out / "config.json", record)
        how = (quiet, stop_requested, f"a2c-jax {command} --resume {out}")
        inputs = prepare_inputs(inputs, config, out, stage_dir, (ref_key, rm_key), how, log)
        stages_done = time.perf_counter()
        a2c = A2CStage(config, inputs, betas, eval_key, layout)
        state, before, after, a2c_seconds = a2c.run(out, a2c_key, resume, quiet, stop_requested, how[2])
    reports = {**inputs.reports, "diverged_at": a2c.diverged_at}
    seconds = {"reference_and_reward_model": stages_done - started, "a2c": a2c_seconds,
               "total": time.perf_counter() - started}  # fmt: skip
    summary = write_outputs(
        out, config, betas, reports, state, before, after, seconds, a2c.eval_task.prompt_len, inputs.decode
    )
    if export is not None and config.model:
        policies = a2c.policies(state.params)  # every process computes, process 0 writes
        if is_primary():
            summary["exported"] = [str(path) for path in export_policies(export, inputs, policies, betas)]
            write_json_atomic(out / "summary.json", summary)
    return summary


def check_betas(betas: tuple[float, ...]) -> tuple[float, ...]:
    """The betas, each finite and >= 0 and none twice (ConfigError naming the first that is not)."""
    for i, beta in enumerate(betas):
        if not beta >= 0 or not np.isfinite(beta):
            raise ConfigError(f"beta={beta!r} is invalid: must be a finite number >= 0")
        if beta in betas[:i]:
            raise ConfigError(f"betas={','.join(f'{b:g}' for b in betas)} is invalid: {beta:g} is given twice")
    return betas


def rlhf_bytes(config: RLHFConfig, population: int) -> dict[str, int]:
    """Generous upper estimates of the memory each part of the chain needs (from the sizes alone):
    {field that sets it: bytes}. A forward and backward pass of one sequence keeps about
    layers x (16 x seq_len x width + 3 x heads x seq_len^2) floats; parameters are held four times
    (weights, gradient, Adam's two moments) per policy."""
    seq, width, layers = config.spec.seq_len, config.width, config.layers
    params = (
        layers * (12 * width * width + 16 * width) + (VOCAB_SIZE + config.context) * (width + 1) + width * VOCAB_SIZE
    )
    per_sequence = 4 * layers * (16 * seq * width + 3 * config.heads * seq * seq)
    weights = 4 * 4 * params
    return {
        "width": weights * max(2, population),
        "ref_batch": weights + config.ref_batch * per_sequence,
        "rm_batch": weights + 2 * config.rm_batch * per_sequence,
        "rm_pairs": weights + 2 * (config.rm_pairs + HELD_OUT_PAIRS) * per_sequence,
        "batch": population * (weights + config.batch * per_sequence),
        "eval_prompts": population * (weights + config.eval_prompts * per_sequence),
    }


def check_rlhf_fits(config: RLHFConfig, population: int, needs: dict[str, int] | None = None) -> None:
    """ConfigError (exit 2), before anything is written, naming the setting whose memory cannot fit
    (`needs`: {field: bytes}, by default the digits model's `rlhf_bytes`)."""
    from a2c_jax.runs.resources import available_bytes

    limit = available_bytes()
    for name, need in (needs or rlhf_bytes(config, population)).items():
        if need > limit:
            value = getattr(config, name)
            shown = repr(value) if isinstance(value, str) else value
            raise ConfigError(
                f"{name}={shown} needs about {need / 2**30:.3g} GiB of memory"
                + (f" ({population} policies)" if population > 1 else "")
                + f", more than the {limit / 2**30:.3g} GiB available: choose a smaller {name}"
            )


class A2CStage:
    """Stage 3: one A2C policy per beta (a population, vmapped), evaluated on held-out prompts at every
    log point; metrics.jsonl holds update 0 and one line per log point and beta."""

    def __init__(
        self,
        config: RLHFConfig,
        inputs: Inputs,
        betas: tuple[float, ...],
        eval_key: jax.Array,
        layout: RLHFLayout | None = None,
    ) -> None:
        lm, task, frozen, eval_set = inputs.lm, inputs.task, inputs.frozen, inputs.eval_set
        self.lm, self.config, self.betas, self.eval_key = lm, config, betas, host_values(eval_key)
        self.task, self.layout = task, layout
        self.check = inputs.check
        """`check()` raises a host-side failure of the last compiled call (a reward function's)"""
        self.frozen = frozen if layout is None else placed(frozen, layout.shardings(frozen))
        family = getattr(getattr(lm, "config", None), "family", "gpt2")
        lora = make_lora(config.lora_rank, config.lora_alpha, config.lora_targets, family)
        self.trainable = Trainable(lora, config.critic == "separate")
        self.diverged_at: dict[int, int] = {}
        """member -> the update its policy diverged at (a resumed run: the first update it was not recorded)"""
        self.eval_task = task
        """the evaluation's task: `task`, or with `eval_set` the same with the held-out prompts' length"""
        if eval_set is None:  # the digits task draws fresh prompts; a prompts file's are drawn from the same file
            self.eval_prompts, self.eval_mask = host_values(task.draw(eval_key, config.eval_prompts))
        else:  # held-out prompts (eval_prompts_file), in the file's order
            self.eval_prompts, self.eval_mask = jnp.asarray(eval_set[0], jnp.int32), jnp.asarray(eval_set[1], bool)
            self.eval_task = dataclasses.replace(task, prompt_len=int(eval_set[0].shape[1]))
        temperature = config.temperature
        truncation = Truncation(config.eval_top_k, config.eval_top_p)
        sampler = make_sampler(lm, config.kv_cache, temperature, task.vocab, truncation)
        self._evaluate = jax.jit(
            jax.vmap(
                lambda p, f, k: score_samples(
                    lm,
                    self.trainable.policy(p, f),
                    f,
                    self.eval_prompts,
                    k,
                    self.eval_task,
                    sampler,
                    temperature,
                    self.eval_mask,
                    config.missing_eos_penalty,
                ),
                in_axes=(0, None, None),
            ),
            out_shardings=None if layout is None else layout.replicated,  # every process reads the samples
        )

    def evaluate(self, params: Params) -> list[dict[str, np.ndarray]]:
        """Every member's samples on the held-out prompts (same key each time), split per member."""
        batch = jax.device_get(self._evaluate(params, self.frozen, self.eval_key))
        self.check()
        return [{k: v[i] for k, v in batch.items()} for i in range(len(self.betas))]

    def summaries(self, params: Params) -> tuple[list[dict[str, np.ndarray]], list[dict[str, float]]]:
        samples = self.evaluate(params)
        return samples, [summarize_samples(b, self.eval_task.prompt_len) for b in samples]

    def policies(self, params: Params) -> Params:
        """Every member's full policy parameters (a leading axis per beta): the trained ones, or with
        LoRA the reference's weights with the adapters merged (a separate critic left out); over a device
        layout, gathered whole (replicated), so that process 0 can write them."""
        trainable, layout = self.trainable, self.layout
        if trainable == Trainable() and layout is None:
            return params
        policy = (lambda p, f: p) if trainable == Trainable() else jax.vmap(trainable.policy, in_axes=(0, None))
        return jax.jit(policy, out_shardings=None if layout is None else layout.replicated)(params, self.frozen)

    def initial_state(self, key: jax.Array) -> StageState:
        hparams = self.config.hparams()
        start = self.frozen.ref_params
        if self.trainable != Trainable():  # LoRA adapters (B zero: the policy starts as the reference), a critic
            start = self.trainable.init(self.frozen, jax.random.fold_in(key, 1))
        one = init_stage(start, make_optimizer("adam", hparams, hparams.lr), key)
        state = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(self.betas), *x.shape)), one)
        state = dataclasses.replace(state, beta=jnp.asarray(self.betas, jnp.float32))
        return state if self.layout is None else placed(state, self.layout.shardings(state, lead=1))

    def run(
        self, out: Path, key: jax.Array, resume: bool, quiet: bool, stop_requested: StopFlag, hint: str
    ) -> tuple[StageState, list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], float]:
        """Train to `config.updates` (from out/checkpoints when resuming). Returns (state, samples
        before, samples after, seconds)."""
        config, betas = self.config, self.betas
        state = self.initial_state(key)
        before, first = self.summaries(state.params)
        metrics = MetricsLog(out / "metrics.jsonl")
        ckpt_dir = out / "checkpoints"
        done = 0
        if resume and latest_step(ckpt_dir) is not None:
            state, meta, _ = restore_checkpoint(ckpt_dir, state, warn=warn)
            done = int(meta["update"])
            kept = [r for r in metrics.read() if r["update"] <= done]  # what truncate_after keeps
            barrier("a2c-jax-rlhf-restored")  # every process has read the metrics before process 0 cuts them
            if is_primary():
                metrics.truncate_after(done)
            recorded = {i: max((r["update"] for r in kept if r["beta"] == b), default=0)
                        for i, b in enumerate(betas)}  # fmt: skip
            self.diverged_at = {i: u + 1 for i, u in recorded.items() if u < done}
        elif is_primary():
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            metrics.path.unlink(missing_ok=True)
            for beta, summary_0 in zip(betas, first, strict=True):
                metrics.append({"update": 0, "beta": beta, **{f"eval_{k}": v for k, v in summary_0.items()}})
        barrier("a2c-jax-rlhf-a2c")
        hparams = config.hparams()
        length = chunk_length(config.updates, config.log_points)
        shard = None if self.layout is None else self.layout.shard_batch
        vmapped = jax.vmap(
            lambda s, f, n: fori_chunk(a2c_step(self.lm, config, f, hparams, self.task, shard, self.trainable), length)(
                s, n
            ),
            in_axes=(0, None, None),
        )
        if self.layout is None:
            chunk = jax.jit(vmapped)
        else:  # the state keeps its layout from chunk to chunk; metrics come back whole
            kept = self.layout.shardings(state, lead=1)
            replicated = self.layout.replicated
            chunk = jax.jit(vmapped, in_shardings=(kept, self.layout.shardings(self.frozen), replicated),
                            out_shardings=(kept, replicated))  # fmt: skip
        writer = CheckpointWriter(ckpt_dir)

        def run_chunk(s: StageState, n: int) -> tuple[StageState, dict[str, Any]]:
            result = jax.block_until_ready(chunk(s, self.frozen, jnp.int32(n)))
            self.check()
            return result

        def save(s: StageState) -> None:
            update = int(np.asarray(s.step)[0])
            writer.save(update, s, {"update": update, "betas": list(betas)})

        started = time.perf_counter()
        with count_bar(config.updates, "A2C", not quiet and is_primary()) as advance:

            def record(new: StageState, chunk_metrics: dict[str, Any], before_n: int, n: int) -> int | None:
                # a beta whose policy diverges stops being recorded; the others go on (all diverged: stop)
                newly: dict[int, int] = {}
                for i in range(len(betas)):
                    bad = first_nonfinite_row({k: np.asarray(v)[i] for k, v in chunk_metrics.items()}, n)
                    if bad is not None and i not in self.diverged_at:
                        newly[i] = before_n + bad + 1
                if len(self.diverged_at) + len(newly) == len(betas):  # every policy diverged: the run has
                    return first_nonfinite_row(chunk_metrics, n)
                for i, update in newly.items():
                    self.diverged_at[i] = update
                    warn(f"beta={betas[i]:g} diverged at update {update}; the other betas go on")
                means = {k: np.asarray(v)[:, :n].mean(axis=1) for k, v in chunk_metrics.items()}
                last = self.summaries(new.params)[1]
                for i, beta in enumerate(betas):
                    if i in self.diverged_at:
                        continue
                    line = {"update": before_n + n, "beta": beta, **{k: float(v[i]) for k, v in means.items()}}
                    if is_primary():
                        metrics.append(line | {f"eval_{k}": v for k, v in last[i].items()})
                advance(before_n + n)
                return None

            advance(done)
            # agree: every process of a multi-process run checkpoints and stops at the same chunk
            job = Job(run_chunk, config.updates, length, record, save, hint, checkpoints=str(ckpt_dir),
                      stop_requested=stop_requested, agree=any_process)  # fmt: skip
            try:
                state = run_loop(job, state, done)
            finally:
                writer.close()
        after = self.evaluate(state.params)
        return state, before, after, time.perf_counter() - started


def write_outputs(
    out: Path,
    config: RLHFConfig,
    betas: tuple[float, ...],
    reports: dict[str, Any],
    state: StageState,
    before: list[dict[str, np.ndarray]],
    after: list[dict[str, np.ndarray]],
    seconds: dict[str, float],
    prompt_len: int,
    decoder: Decoder = decode,
) -> dict[str, Any]:
    """summary.json, samples.json, rlhf.png (and tradeoff.png for several betas), written by process 0;
    returns the summary."""
    first = [summarize_samples(b, prompt_len) for b in before]
    last = [summarize_samples(a, prompt_len) for a in after]
    diverged_at = reports.pop("diverged_at", {})
    members = [
        {"beta": beta, "reference": first[i], "final": last[i], "gold_gain": last[i]["gold"] - first[i]["gold"],
         "final_beta": float(state.beta[i]), "diverged_at": diverged_at.get(i)}
        for i, beta in enumerate(betas)
    ]  # fmt: skip
    summary = {
        **reports,
        "members": members,
        "eval_prompts": config.eval_prompts,
        "seconds": seconds,
        "a2c_updates_per_second": config.updates / max(seconds["a2c"], 1e-9),
        "device": jax.devices()[0].device_kind,
    }
    if not is_primary():  # process 0 writes the files of a multi-process run
        return summary
    write_json_atomic(out / "summary.json", summary)
    samples = {
        "reference": sample_texts(before[0], SAMPLE_PROMPTS, decoder),
        **{f"policy_beta_{beta:g}": sample_texts(after[i], SAMPLE_PROMPTS, decoder) for i, beta in enumerate(betas)},
    }
    write_json_atomic(out / "samples.json", samples)
    from a2c_jax.runs.plots import plot_rlhf, plot_rlhf_tradeoff

    records = MetricsLog(out / "metrics.jsonl").read()
    plot_rlhf(records, out / "rlhf.png")
    if len(betas) > 1:
        plot_rlhf_tradeoff(records, out / "tradeoff.png")
    return summary
