"""The host loop behind `a2c-jax train`: compiled chunks of updates with progress, logging,
checkpoints, interruption handling and a final evaluation. Everything here runs on the host;
the compiled work is `make_run_chunk` and `evaluate`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.checkpoint import CheckpointError, restore_checkpoint, save_checkpoint
from a2c_jax.config import A2CConfig, ConfigError, HParams
from a2c_jax.evaluate import evaluate_final_jit
from a2c_jax.logging import MetricsLog, first_nonfinite, progress_bar, summarize_chunk, write_json_atomic
from a2c_jax.plotting import plot_learning_curve
from a2c_jax.train import TrainState, init_state, make_agent, make_run_chunk


class TrainingDiverged(RuntimeError):
    """The loss or gradient became non-finite; the last good state was checkpointed."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C: the last completed chunk was checkpointed and the run can be resumed."""


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Host-loop settings that do not change the compiled training program.

    Attributes:
        seed: PRNG seed of the run.
        eval_episodes: greedy episodes in the final evaluation.
        log_points: about how many metrics.jsonl records (compiled chunks) the run is split into.
        checkpoint_seconds: minimum wall-clock between periodic checkpoints (one is always written
            at the end, on Ctrl-C and before stopping on a non-finite loss).
        progress: show the progress bar.
    """

    seed: int = 0
    eval_episodes: int = 32
    log_points: int = 100
    checkpoint_seconds: float = 60.0
    progress: bool = True

    def validate(self) -> RunSettings:
        for name in ("eval_episodes", "log_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}={value!r} is invalid: must be a positive integer")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} is invalid: must be a non-negative integer")
        if not self.checkpoint_seconds >= 0:
            raise ConfigError(f"checkpoint_seconds={self.checkpoint_seconds!r} is invalid: must be >= 0")
        return self


def params_finite(params: Any) -> bool:
    """True when every parameter is finite."""
    return all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(params))


@functools.lru_cache(maxsize=8)
def compile_chunk(config: A2CConfig, chunk: int) -> Any:
    """The compiled `run_chunk(state, hparams, n)` for `config` (cached: one compile per process)."""
    state = jax.eval_shape(functools.partial(init_state, config), HParams().as_arrays(), jax.random.PRNGKey(0))
    hp = jax.eval_shape(HParams().as_arrays)
    return jax.jit(make_run_chunk(config, chunk)).lower(state, hp, jnp.int32(chunk)).compile()


def run_record(config: A2CConfig, hparams: HParams, settings: RunSettings) -> dict[str, Any]:
    """What config.json holds: enough to rebuild and resume the run."""
    return {
        "config": dataclasses.asdict(config),
        "hparams": hparams.to_dict(),
        "settings": dataclasses.asdict(settings),
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
    }


def load_run_record(run_dir: Path) -> tuple[A2CConfig, HParams, RunSettings]:
    """Read RUN_DIR/config.json back, or raise CheckpointError saying what is wrong with it."""
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    try:
        data = json.loads(path.read_text())
        cfg = dict(data["config"])
        cfg["hidden_sizes"] = tuple(cfg["hidden_sizes"])
        return A2CConfig(**cfg), HParams(**data["hparams"]), RunSettings(**data["settings"])
    except FileNotFoundError:
        raise CheckpointError(f"{str(path)!r} is missing: {str(run_dir)!r} is not an a2c-jax run directory") from None
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{str(path)!r} is corrupt ({type(err).__name__}: {err})") from None


def train_run(
    config: A2CConfig,
    hparams: HParams,
    run_dir: Path,
    settings: RunSettings = RunSettings(),
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train with a host loop over compiled chunks; write config.json, metrics.jsonl, checkpoints,
    learning_curve.png and summary.json into `run_dir`; return the summary.

    With `resume=True` training continues from the newest checkpoint in `run_dir`; pass the
    configuration that `load_run_record(run_dir)` reads back (the result equals an uninterrupted run
    with the same seed).
    """
    wall_start = time.perf_counter()
    config.validate()
    hparams.validate()
    settings.validate()
    make_agent(config)  # unknown env ids and unsupported spaces fail before anything is written
    ckpt_dir = run_dir / "checkpoints"
    metrics_log = MetricsLog(run_dir / "metrics.jsonl")
    hp = hparams.as_arrays()
    init = jax.jit(init_state, static_argnums=0)
    key = jax.random.PRNGKey(settings.seed)
    prior_wall = prior_compile = 0.0
    if resume:
        state, meta, _ = restore_checkpoint(ckpt_dir, jax.eval_shape(init, config, hp, key))
        prior_wall, prior_compile = float(meta["wall_seconds"]), float(meta["compile_seconds"])
        metrics_log.truncate_after(int(meta["update"]))
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(
                f"run_dir={str(run_dir)!r} already exists and is not empty: resume it with --resume or choose another"
            )
        write_json_atomic(run_dir / "config.json", run_record(config, hparams, settings))
        state = init(config, hp, key)

    total = config.num_updates
    chunk = max(1, math.ceil(total / settings.log_points))
    t0 = time.perf_counter()
    compiled = compile_chunk(config, chunk)
    compile_seconds = time.perf_counter() - t0

    done = int(state.update_step)
    start_done = done
    train_seconds = 0.0
    last_ckpt = time.perf_counter()

    def checkpoint(s: TrainState) -> None:
        meta = {
            "update": int(s.update_step),
            "env_steps": int(s.update_step) * config.batch_size,
            "wall_seconds": prior_wall + time.perf_counter() - wall_start,
            "compile_seconds": prior_compile + compile_seconds,
        }
        save_checkpoint(ckpt_dir, int(s.update_step), s, meta)

    try:
        with progress_bar(total * config.batch_size, settings.progress) as advance:
            advance(done * config.batch_size, 0.0, math.nan)
            while done < total:
                n = min(chunk, total - done)
                t = time.perf_counter()
                new_state, metrics = compiled(state, hp, jnp.int32(n))
                jax.block_until_ready(new_state)
                train_seconds += time.perf_counter() - t
                bad = first_nonfinite(metrics, n)
                if bad is None and not params_finite(new_state.params):
                    bad = n - 1
                if bad is not None:
                    checkpoint(state)
                    raise TrainingDiverged(
                        f"non-finite loss or parameters at update {done + bad} (env step "
                        f"{(done + bad) * config.batch_size}); training stopped and the last good state "
                        f"(update {done}) is checkpointed in {str(ckpt_dir)!r}"
                    )
                # log first, then adopt the state: an interruption in between leaves records past the
                # checkpoint, which resuming truncates, never a checkpoint without its records
                record: dict[str, Any] = {"update": done + n, "env_steps": (done + n) * config.batch_size}
                record.update(summarize_chunk(metrics, n))
                record["wall_seconds"] = prior_wall + time.perf_counter() - wall_start
                metrics_log.append(record)
                state, done = new_state, done + n
                sps = (done - start_done) * config.batch_size / max(train_seconds, 1e-9)
                advance(done * config.batch_size, sps, record["episode_return"])
                if time.perf_counter() - last_ckpt >= settings.checkpoint_seconds and done < total:
                    checkpoint(state)
                    last_ckpt = time.perf_counter()
    except KeyboardInterrupt:
        checkpoint(state)
        raise TrainingInterrupted(
            f"interrupted at update {done}/{total}; checkpoint saved: continue with `a2c-jax train --resume {run_dir}`"
        ) from None
    checkpoint(state)

    result = evaluate_final_jit(config, state, jax.random.PRNGKey(settings.seed), settings.eval_episodes)
    returns = np.asarray(result.returns, np.float64)
    records = metrics_log.read()
    plot_learning_curve(records, run_dir / "learning_curve.png", f"A2C on {config.env_id}", float(returns.mean()))
    trained_steps = (done - start_done) * config.batch_size
    last_return = next((r["episode_return"] for r in reversed(records) if r.get("episode_return") is not None), None)
    summary = {
        "env_id": config.env_id,
        "seed": settings.seed,
        "env_steps": done * config.batch_size,
        "updates": done,
        "wall_seconds": prior_wall + time.perf_counter() - wall_start,
        "compile_seconds": prior_compile + compile_seconds,
        "train_seconds": train_seconds,
        "steps_per_second": trained_steps / train_seconds if train_seconds > 0 else None,
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "eval_episodes": settings.eval_episodes,
        "final_train_return": last_return,
        "resumed": resume,
    }
    write_json_atomic(run_dir / "summary.json", summary)
    log(
        f"{config.env_id}: {summary['env_steps']:,} steps in {summary['wall_seconds']:.1f}s "
        f"(compile {summary['compile_seconds']:.1f}s, {summary['steps_per_second'] or 0:,.0f} steps/s); "
        f"greedy eval return {summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f} "
        f"over {settings.eval_episodes} episodes -> {run_dir}"
    )
    return summary
