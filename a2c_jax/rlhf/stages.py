"""The two supervised stages of the RLHF chain (the reference and the reward model): each trained
through the host loop (`runs.loop`) with progress checkpoints beside its cache entry, and cached by
the settings it reads (`rlhf.config.stage_key`) so that later runs reuse it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.rlhf.config import stage_key
from a2c_jax.rlhf.model import LanguageModel, Params
from a2c_jax.rlhf.sampling import DIGITS, Vocab
from a2c_jax.rlhf.sharding import across_processes, host_values
from a2c_jax.rlhf.train import (
    Frozen,
    Pairs,
    RLHFConfig,
    StageState,
    adam,
    check_model,
    fori_chunk,
    init_stage,
    pair_accuracy,
    preference_pairs,
    reference_step,
    reward_model_step,
)
from a2c_jax.runs.checkpoint import CheckpointError, CheckpointWriter, latest_step, restore_checkpoint, save_checkpoint
from a2c_jax.runs.distributed import any_process, barrier, is_primary
from a2c_jax.runs.lock import DirectoryLock
from a2c_jax.runs.loop import Job, chunk_length, run_loop
from a2c_jax.runs.records import count_bar
from a2c_jax.runs.rundir import warn

HELD_OUT_PAIRS = 512
SAMPLE_PROMPTS = 6
STAGE_POINTS = 20
"""Chunks (progress-bar steps and checkpoints) of the reference and reward-model stages."""
Log = Callable[[str], None]
StopFlag = Callable[[], int]


def first_nonfinite_row(metrics: dict[str, Any], n: int) -> int | None:
    """Index of the first of the chunk's `n` steps (last axis) with a non-finite metric, or None; a
    leading population axis counts as bad when any member is."""
    finite = np.ones(n, bool)
    for value in metrics.values():
        rows = np.asarray(value)[..., :n]
        finite &= np.isfinite(rows).reshape(-1, n).all(axis=0)
    return None if finite.all() else int(np.argmax(~finite))


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
        if directory.exists() and is_primary():  # damaged: kept for inspection, out of the way of the new entry
            aside = directory.with_name(f"{directory.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            directory.rename(aside)
            warn(f"the cached stage {str(directory)!r} could not be read; moved it to {str(aside)!r}, training anew")
        barrier("a2c-jax-stage-aside")
    params, report = train()
    save_checkpoint(directory, steps, params, {"update": steps, "settings": settings, "report": report})
    if is_primary():
        shutil.rmtree(progress_path(directory), ignore_errors=True)
    barrier("a2c-jax-stage-saved")
    return params, report


def progress_path(directory: Path) -> Path:
    """Where a stage keeps its checkpoints while it trains (beside its cache entry `directory`)."""
    return directory.with_name(directory.name + ".progress")


@dataclasses.dataclass(frozen=True)
class StageRun:
    """How a supervised stage runs: its cache entry (the progress checkpoints sit beside it), the
    settings that key it, the progress bar, the stop flag and the command that resumes the run."""

    directory: Path
    settings: dict[str, Any]
    quiet: bool
    stop_requested: StopFlag
    resume_hint: str


def run_supervised(
    name: str, step: Callable[..., Any], state: StageState, total: int, how: StageRun
) -> tuple[StageState, list[dict[str, Any]]]:
    """`total` steps of `step` through the host loop, with a progress bar named `name`; checkpoints in
    `progress_path(how.directory)`, from which an interrupted stage continues. Returns (state, the mean
    metrics of each chunk). In a multi-process run every process trains the same stage on arrays
    replicated over all devices (`sharding.across_processes`), and process 0 alone holds the lock."""
    state = across_processes(state)
    length = chunk_length(total, STAGE_POINTS)
    chunk = jax.jit(fori_chunk(step, length))
    progress = progress_path(how.directory)
    history: list[dict[str, Any]] = []
    # two runs must not train one stage entry at once (process 0 holds the lock for a multi-process run);
    # taken first, as it creates the directory: then every process sees the same one below
    lock = DirectoryLock(progress, "stage_dir").acquire() if is_primary() else None
    try:
        barrier("a2c-jax-stage-lock")
        if latest_step(progress) is not None:
            try:
                saved, meta, _ = restore_checkpoint(progress, state, warn=warn)
                if meta.get("settings") == how.settings:
                    state, history = saved, list(meta["history"])
            except CheckpointError:
                pass  # unreadable progress: the stage starts again
        return _supervised_loop(name, chunk, state, total, length, progress, history, how)
    finally:
        if lock is not None:
            lock.release()


def _supervised_loop(
    name: str,
    chunk: Callable[..., Any],
    state: StageState,
    total: int,
    length: int,
    progress: Path,
    history: list[dict[str, Any]],
    how: StageRun,
) -> tuple[StageState, list[dict[str, Any]]]:
    """`run_supervised`'s host loop from `state` (chunks of `length` steps, checkpoints in `progress`)."""
    writer = CheckpointWriter(progress)

    def run_chunk(s: StageState, n: int) -> tuple[StageState, dict[str, Any]]:
        return jax.block_until_ready(chunk(s, jnp.int32(n)))

    def save(s: StageState) -> None:
        writer.save(int(s.step), s, {"update": int(s.step), "settings": how.settings, "history": history})

    with count_bar(total, name, not how.quiet and is_primary()) as advance:

        def record(new: StageState, metrics: dict[str, Any], before: int, n: int) -> int | None:
            bad = first_nonfinite_row(metrics, n)
            if bad is None:
                history.append({k: float(np.mean(np.asarray(v)[:n])) for k, v in metrics.items()})
                advance(before + n)
            return bad

        advance(int(state.step))
        job = Job(run_chunk, total, length, record, save, how.resume_hint, what=f"{name} step",
                  checkpoints=str(progress), stop_requested=how.stop_requested, agree=any_process)  # fmt: skip
        try:
            return run_loop(job, state, int(state.step)), history
        finally:
            writer.close()


def train_reference(
    model: LanguageModel, config: RLHFConfig, key: jax.Array, how: StageRun
) -> tuple[Params, dict[str, Any]]:
    """Stage 1: maximum likelihood on the reference corpus. Report: final token NLL."""
    init_key, train_key = jax.random.split(key)
    params = model.init(init_key, jnp.zeros((1, config.spec.seq_len), jnp.int32))
    check_model(model, params, config.spec)
    state = init_stage(params, adam(config.ref_lr, config.max_grad_norm), train_key)
    state, history = run_supervised("reference", reference_step(model, config), state, config.ref_steps, how)
    return state.params, {"nll_first": history[0]["nll"], "nll_last": history[-1]["nll"]}


def fit_reward_model(
    model: LanguageModel,
    config: RLHFConfig,
    init_params: Params,
    pairs: tuple[Pairs, Pairs | None],
    prompt_len: int,
    vocab: Vocab,
    key: jax.Array,
    how: StageRun,
) -> tuple[Params, dict[str, Any]]:
    """Bradley-Terry from `init_params` on the training pairs (rm_steps of rm_batch pairs), then the
    held-out pairs measured when given. Report: training loss and accuracy, held-out loss and label
    accuracy (and gold accuracy when the pairs have a gold reward)."""
    train, held_out = pairs
    train, held_out = host_values((train, held_out))  # the step closes over the pairs
    state = init_stage(init_params, adam(config.rm_lr, config.max_grad_norm), key)
    step = reward_model_step(model, config, train, prompt_len, vocab)
    state, history = run_supervised("reward model", step, state, config.rm_steps, how)
    report: dict[str, Any] = {
        "bt_loss_first": history[0]["bt_loss"],
        "bt_loss_last": history[-1]["bt_loss"],
        "train_accuracy_last": history[-1]["bt_accuracy"],
    }
    if held_out is not None:
        held = jax.jit(pair_accuracy, static_argnums=(0, 3, 4))(model, state.params, held_out, prompt_len, vocab)
        report |= {f"held_out_{k}": float(v) for k, v in held.items()}
        report["held_out_pairs"] = int(held_out.label.shape[0])
        if not bool(jnp.any(held_out.gold_a != held_out.gold_b)):  # no gold ordering to measure
            del report["held_out_gold_accuracy"]
    return state.params, report


def train_reward_model(
    model: LanguageModel, config: RLHFConfig, ref_params: Params, key: jax.Array, how: StageRun
) -> tuple[Params, dict[str, Any]]:
    """Stage 2 of the digits task: Bradley-Terry on pairs sampled from the reference, initialised from
    the reference's trunk (`fit_reward_model`, HELD_OUT_PAIRS more pairs held out)."""
    pair_key, train_key = jax.random.split(key)
    sampler = jax.jit(preference_pairs, static_argnums=(0, 3, 4, 5))
    count = config.rm_pairs + HELD_OUT_PAIRS
    pairs: Pairs = sampler(model, ref_params, pair_key, count, config.spec, config.kv_cache)
    train = jax.tree.map(lambda x: x[: config.rm_pairs], pairs)
    held_out = jax.tree.map(lambda x: x[config.rm_pairs :], pairs)
    return fit_reward_model(model, config, ref_params, (train, held_out), config.spec.prompt_len, DIGITS, train_key,
                            how)  # fmt: skip


HELD_OUT_FRACTION = 10
"""One preference pair in this many is held out (none when a file has fewer pairs)."""


def split_pairs(pairs: Pairs, key: jax.Array) -> tuple[Pairs, Pairs | None]:
    """(training pairs, held-out pairs or None): a random tenth held out, drawn with `key`."""
    count = int(pairs.label.shape[0])
    held = count // HELD_OUT_FRACTION
    if held == 0:
        return pairs, None
    order = jax.random.permutation(key, count)
    return jax.tree.map(lambda x: x[order[held:]], pairs), jax.tree.map(lambda x: x[order[:held]], pairs)


def file_digest(paths: list[Path]) -> str:
    """SHA-256 of the files' names and contents, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_files(directory: Path) -> list[Path]:
    """The files that define a model directory's weights: config.json and its safetensors files, sorted."""
    return [directory / "config.json", *sorted(directory.glob("*.safetensors"))]


def train_text_reward_model(
    model: LanguageModel,
    config: RLHFConfig,
    init: tuple[Path, Params],
    pairs: Pairs,
    vocab: Vocab,
    stage_dir: Path,
    how: tuple[bool, StopFlag, str],
    log: Log,
) -> tuple[Params, dict[str, Any]]:
    """The reward model of `config.preferences` (tokenized `pairs`) from `init` = (its directory, its
    params), cached under `stage_dir` by the preference file's and the directory's contents and the
    reward-model settings (an interrupted training resumes from its progress checkpoints)."""
    directory, init_params = init
    settings = {
        "preferences": file_digest([Path(config.preferences)]),
        "init": file_digest(model_files(directory)),
        **{name: getattr(config, name) for name in ("seed", "rm_steps", "rm_batch", "rm_lr", "max_grad_norm")},
    }
    entry = stage_path(stage_dir, "reward_model", settings)
    run = StageRun(entry, settings, *how)
    split_key, train_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed), 2))
    prompt_len = int(pairs.prompt_mask.shape[1]) if pairs.prompt_mask is not None else 0

    def train() -> tuple[Params, dict[str, Any]]:
        params, report = fit_reward_model(model, config, init_params, split_pairs(pairs, split_key), prompt_len,
                                          vocab, train_key, run)  # fmt: skip
        return params, {"preferences": config.preferences, "pairs": int(pairs.label.shape[0]), **report}

    return cached_stage(entry, settings, init_params, train, config.rm_steps, log)


def train_stages(
    lm: LanguageModel,
    config: RLHFConfig,
    stage_dir: Path,
    keys: tuple[jax.Array, jax.Array],
    quiet: bool,
    stop_requested: StopFlag,
    hint: str,
    log: Log,
) -> tuple[Frozen, dict[str, Any]]:
    """The reference and the reward model, each from its cache entry under `stage_dir` or trained
    (resuming its progress checkpoints). Returns (Frozen(ref, rm), their reports)."""
    ref_key, rm_key = keys
    like = jax.eval_shape(lm.init, ref_key, jnp.zeros((1, config.spec.seq_len), jnp.int32))
    like = across_processes(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), like))
    ref_settings = {**stage_key(config, "reference"), "model": repr(lm)}
    ref_dir = stage_path(stage_dir, "reference", ref_settings)
    ref_how = StageRun(ref_dir, ref_settings, quiet, stop_requested, hint)
    ref_params, ref_report = cached_stage(
        ref_dir, ref_settings, like, lambda: train_reference(lm, config, ref_key, ref_how), config.ref_steps, log
    )
    rm_settings = {**stage_key(config, "reward_model"), "model": repr(lm)}
    rm_dir = stage_path(stage_dir, "reward_model", rm_settings)
    rm_how = StageRun(rm_dir, rm_settings, quiet, stop_requested, hint)
    rm_params, rm_report = cached_stage(
        rm_dir, rm_settings, like,
        lambda: train_reward_model(lm, config, ref_params, rm_key, rm_how), config.rm_steps, log,
    )  # fmt: skip
    return Frozen(ref_params, rm_params), {"reference_stage": ref_report, "reward_model_stage": rm_report}
