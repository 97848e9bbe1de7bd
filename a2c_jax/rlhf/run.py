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
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.config import ConfigError
from a2c_jax.core.optim import make_optimizer
from a2c_jax.rlhf.model import LanguageModel, Params
from a2c_jax.rlhf.sampling import make_sampler
from a2c_jax.rlhf.task import decode, sample_prompts
from a2c_jax.rlhf.train import (
    SEQUENCE_METRICS,
    Frozen,
    Pairs,
    RLHFConfig,
    StageState,
    a2c_step,
    adam,
    check_model,
    chunk_length,
    init_stage,
    make_model,
    pair_accuracy,
    preference_pairs,
    reference_step,
    reward_model_step,
    run_stage,
    scan_chunk,
    score_samples,
)
from a2c_jax.runs.checkpoint import CheckpointError, restore_checkpoint, save_checkpoint
from a2c_jax.runs.records import MetricsLog, count_bar, read_json, write_json_atomic

REFERENCE_FIELDS = [
    *("seed", "prompt_digits", "response_len", "context", "width", "layers", "heads"),
    *("ref_steps", "ref_batch", "ref_lr", "max_grad_norm"),
]
REWARD_FIELDS = [*REFERENCE_FIELDS, "rm_pairs", "rm_steps", "rm_batch", "rm_lr", "kv_cache"]
HELD_OUT_PAIRS = 512
SAMPLE_PROMPTS = 6
Log = Callable[[str], None]


def stage_settings(config: RLHFConfig, fields: list[str]) -> dict[str, Any]:
    return {name: getattr(config, name) for name in fields}


def stage_path(root: Path, stage: str, settings: dict[str, Any]) -> Path:
    """root/<stage>-<first 12 hex digits of the settings' SHA-256>."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return root / f"{stage}-{digest}"


def cached_stage(
    directory: Path,
    settings: dict[str, Any],
    like: Params,
    train: Callable[[], tuple[Params, dict[str, Any]]],
    steps: int,
    log: Log,
) -> tuple[Params, dict[str, Any]]:
    """Restore a stage's params from `directory` when it holds these settings, else train and save.

    Returns (params, the stage's report)."""
    try:
        params, meta, _ = restore_checkpoint(directory, like)
        if meta.get("settings") == settings:
            log(f"reusing {directory.name} (same settings)")
            return params, meta["report"]
    except CheckpointError:
        pass
    params, report = train()
    save_checkpoint(directory, steps, params, {"update": steps, "settings": settings, "report": report})
    return params, report


def _bar_stage(
    name: str, step: Callable[..., Any], state: StageState, total: int, points: int, quiet: bool
) -> tuple[StageState, list[dict[str, Any]]]:
    """Run `total` steps of `step` in compiled chunks, with a progress bar named `name`."""
    length = chunk_length(total, points)
    chunk = jax.jit(scan_chunk(step, length))
    with count_bar(total, name, not quiet) as advance:
        return run_stage(chunk, state, total // length, lambda i, *_: advance((i + 1) * length))


def train_reference(
    model: LanguageModel, config: RLHFConfig, key: jax.Array, quiet: bool
) -> tuple[Params, dict[str, Any]]:
    """Stage 1: maximum likelihood on the reference corpus. Report: final token NLL."""
    init_key, train_key = jax.random.split(key)
    params = model.init(init_key, jnp.zeros((1, config.spec.seq_len), jnp.int32))
    check_model(model, params, config.spec)
    state = init_stage(params, adam(config.ref_lr, config.max_grad_norm), train_key)
    state, history = _bar_stage("reference", reference_step(model, config), state, config.ref_steps, 20, quiet)
    return state.params, {"nll_first": history[0]["nll"], "nll_last": history[-1]["nll"]}


def train_reward_model(
    model: LanguageModel, config: RLHFConfig, ref_params: Params, key: jax.Array, quiet: bool
) -> tuple[Params, dict[str, Any]]:
    """Stage 2: Bradley-Terry on pairs sampled from the reference, initialised from the reference's
    trunk. Report: training loss curve ends, and held-out loss / label accuracy / gold accuracy."""
    pair_key, train_key = jax.random.split(key)
    sampler = jax.jit(preference_pairs, static_argnums=(0, 3, 4, 5))
    count = config.rm_pairs + HELD_OUT_PAIRS
    pairs: Pairs = sampler(model, ref_params, pair_key, count, config.spec, config.kv_cache)
    train = jax.tree.map(lambda x: x[: config.rm_pairs], pairs)
    held_out = jax.tree.map(lambda x: x[config.rm_pairs :], pairs)
    state = init_stage(ref_params, adam(config.rm_lr, config.max_grad_norm), train_key)
    step = reward_model_step(model, config, train)
    state, history = _bar_stage("reward model", step, state, config.rm_steps, 20, quiet)
    held = jax.jit(pair_accuracy, static_argnums=(0, 3))(model, state.params, held_out, config.spec.prompt_len)
    report = {
        "bt_loss_first": history[0]["bt_loss"],
        "bt_loss_last": history[-1]["bt_loss"],
        "train_accuracy_last": history[-1]["bt_accuracy"],
        **{f"held_out_{k}": float(v) for k, v in held.items()},
        "held_out_pairs": HELD_OUT_PAIRS,
    }
    return state.params, report


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


def sample_texts(out: dict[str, np.ndarray], count: int) -> list[dict[str, Any]]:
    return [
        {"text": decode(out["tokens"][i]), "gold": float(out["gold"][i]), "score": float(out["score"][i])}
        for i in range(count)
    ]


def check_out(out: Path, record: dict[str, Any]) -> None:
    """ConfigError when `out` holds a run of other settings (naming the first that differs)."""
    path = out / "config.json"
    if not path.exists():
        return
    held = read_json(path, "out")
    if held == record:
        return
    if not isinstance(held, dict):
        raise ConfigError(f"out={str(out)!r} holds a config.json that is not an RLHF run's; choose another --out")
    differs = sorted(k for k in set(held) | set(record) if held.get(k) != record.get(k))
    name = differs[0]
    raise ConfigError(
        f"out={str(out)!r} holds a run of other settings ({name}={held.get(name)!r} there, {record.get(name)!r} "
        "now); choose another --out"
    )


def run_rlhf(
    config: RLHFConfig,
    out: Path,
    stage_dir: Path,
    betas: tuple[float, ...] | None = None,
    quiet: bool = False,
    log: Log = print,
    model: LanguageModel | None = None,
) -> dict[str, Any]:
    """The whole chain: reference -> reward model -> A2C for each beta (one vmapped program).

    Returns the summary (also written to out/summary.json)."""
    config.validate()
    betas = tuple(betas) if betas else (config.beta,)
    for beta in betas:
        if not beta >= 0 or not np.isfinite(beta):
            raise ConfigError(f"beta={beta!r} is invalid: must be a finite number >= 0")
    record = {**dataclasses.asdict(config), "betas": list(betas)}
    check_out(out, record)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", record)
    lm: LanguageModel = model or make_model(config)
    spec = config.spec
    ref_key, rm_key, a2c_key, eval_key = jax.random.split(jax.random.PRNGKey(config.seed), 4)
    started = time.perf_counter()

    like = jax.eval_shape(lm.init, ref_key, jnp.zeros((1, spec.seq_len), jnp.int32))
    like = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), like)
    ref_settings = {**stage_settings(config, REFERENCE_FIELDS), "model": repr(lm)}
    ref_params, ref_report = cached_stage(
        stage_path(stage_dir, "reference", ref_settings),
        ref_settings,
        like,
        lambda: train_reference(lm, config, ref_key, quiet),
        config.ref_steps,
        log,
    )
    rm_settings = {**stage_settings(config, REWARD_FIELDS), "model": repr(lm)}
    rm_params, rm_report = cached_stage(
        stage_path(stage_dir, "reward_model", rm_settings),
        rm_settings,
        like,
        lambda: train_reward_model(lm, config, ref_params, rm_key, quiet),
        config.rm_steps,
        log,
    )
    frozen = Frozen(ref_params, rm_params)
    stages_done = time.perf_counter()

    eval_prompts = sample_prompts(eval_key, config.eval_prompts, spec)
    sampler = make_sampler(lm, config.kv_cache)
    evaluate = jax.jit(
        jax.vmap(lambda p, f, k: score_samples(lm, p, f, eval_prompts, k, spec, sampler), in_axes=(0, None, None))
    )
    population = len(betas)
    hparams = config.hparams()
    tx = make_optimizer("adam", hparams, hparams.lr)
    one = init_stage(ref_params, tx, a2c_key)
    state = jax.tree.map(lambda x: jnp.broadcast_to(x, (population, *x.shape)), one)
    state = dataclasses.replace(state, beta=jnp.asarray(betas, jnp.float32))

    def evaluate_members(params: Params) -> list[dict[str, np.ndarray]]:
        """Every member's samples on the held-out prompts (same key each time), split per member."""
        batch = jax.device_get(evaluate(params, frozen, eval_key))
        return [{k: v[i] for k, v in batch.items()} for i in range(population)]

    before = evaluate_members(state.params)
    first = [summarize_samples(b, spec.prompt_len) for b in before]
    metrics = MetricsLog(out / "metrics.jsonl")
    metrics.path.unlink(missing_ok=True)
    for beta, summary_0 in zip(betas, first, strict=True):
        metrics.append({"update": 0, "beta": beta, **{f"eval_{k}": v for k, v in summary_0.items()}})

    length = chunk_length(config.updates, config.log_points)
    chunk = jax.jit(
        jax.vmap(
            lambda s, f: scan_chunk(a2c_step(lm, config, f, hparams), length)(s),
            in_axes=(0, None),
        )
    )
    after, last = before, first

    def log_chunk(index: int, trained: StageState, means: dict[str, Any]) -> None:
        nonlocal after, last
        after = evaluate_members(trained.params)
        last = [summarize_samples(a, spec.prompt_len) for a in after]
        update = (index + 1) * length
        for i, beta in enumerate(betas):
            line = {"update": update, "beta": beta, **{k: float(v[i]) for k, v in means.items()}}
            line |= {f"eval_{k}": v for k, v in last[i].items()}
            if not all(np.isfinite(v) for v in line.values()):
                raise FloatingPointError(f"A2C diverged at update {update} (beta={beta}): non-finite metrics")
            metrics.append(line)
        advance(update)

    a2c_started = time.perf_counter()
    with count_bar(config.updates, "A2C", not quiet) as advance:
        state, _ = run_stage(lambda st: chunk(st, frozen), state, config.updates // length, log_chunk)
    a2c_seconds = time.perf_counter() - a2c_started

    save_checkpoint(out / "checkpoints", config.updates, state, {"update": config.updates, "betas": list(betas)})
    records = metrics.read()
    members = []
    for i, beta in enumerate(betas):
        members.append(
            {
                "beta": beta,
                "reference": first[i],
                "final": last[i],
                "gold_gain": last[i]["gold"] - first[i]["gold"],
                "final_beta": float(state.beta[i]),
            }
        )
    summary = {
        "reference_stage": ref_report,
        "reward_model_stage": rm_report,
        "members": members,
        "eval_prompts": config.eval_prompts,
        "seconds": {
            "reference_and_reward_model": stages_done - started,
            "a2c": a2c_seconds,
            "total": time.perf_counter() - started,
        },
        "a2c_updates_per_second": config.updates / a2c_seconds,
        "device": jax.devices()[0].device_kind,
    }
    write_json_atomic(out / "summary.json", summary)
    samples = {
        "reference": sample_texts(before[0], SAMPLE_PROMPTS),
        **{f"policy_beta_{beta:g}": sample_texts(after[i], SAMPLE_PROMPTS) for i, beta in enumerate(betas)},
    }
    write_json_atomic(out / "samples.json", samples)
    from a2c_jax.runs.plots import plot_rlhf, plot_rlhf_tradeoff

    plot_rlhf(records, out / "rlhf.png")
    if population > 1:
        plot_rlhf_tradeoff(records, out / "tradeoff.png")
    return summary
