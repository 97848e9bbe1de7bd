"""A training run's directory: its settings (RunSettings), the config.json that rebuilds and resumes
it, checks that an output directory can be written, and the rules for starting a directory afresh."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from pathlib import Path
from typing import Any

import jax

import a2c_jax
from a2c_jax.config import (
    A2CConfig,
    ConfigError,
    HParams,
    check_int,
    check_number,
    check_seed,
    coerce_dataclass_fields,
    flat_settings,
)
from a2c_jax.runs.checkpoint import CheckpointError, latest_step
from a2c_jax.runs.distributed import parse_devices
from a2c_jax.runs.lock import entries
from a2c_jax.runs.records import read_json
from a2c_jax.runs.trackers import parse_trackers


def warn(text: str) -> None:
    """One warning line on stderr."""
    print(f"a2c-jax: warning: {text}", file=sys.stderr)


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
        devices: "all" or a count: the env axis of the state is sharded over that many devices.
        log: experiment trackers that mirror metrics.jsonl, comma-separated ("tensorboard"; "" none).
    """

    seed: int = 0
    eval_episodes: int = 32
    log_points: int = 100
    checkpoint_seconds: float = 60.0
    progress: bool = True
    devices: str = "1"
    log: str = ""

    def validate(self) -> RunSettings:
        for name in ("eval_episodes", "log_points"):
            check_int(name, getattr(self, name))
        check_seed("seed", self.seed)
        check_number("checkpoint_seconds", self.checkpoint_seconds, 0.0)
        parse_devices(self.devices)
        parse_trackers(self.log)
        return self


def run_record(config: A2CConfig, hparams: HParams, settings: RunSettings) -> dict[str, Any]:
    """What config.json holds: enough to rebuild and resume the run."""
    return {
        "config": dataclasses.asdict(config),
        "hparams": hparams.to_dict(),
        "settings": dataclasses.asdict(settings),
        "versions": {"a2c_jax": a2c_jax.__version__, "jax": jax.__version__, "python": platform.python_version()},
    }


def parse_run_record(data: Any, source: str) -> tuple[A2CConfig, HParams, RunSettings]:
    """The typed (config, hparams, settings) of a config.json's content; ConfigError naming the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a JSON object, not {type(data).__name__}")
    for section in ("config", "hparams", "settings"):
        if section not in data:
            raise ConfigError(f"{source} has no {section!r} section")
    config = A2CConfig(**coerce_dataclass_fields(A2CConfig, data["config"], f"{source} config"))
    hparams = HParams(**coerce_dataclass_fields(HParams, data["hparams"], f"{source} hparams"))
    settings = RunSettings(**coerce_dataclass_fields(RunSettings, data["settings"], f"{source} settings"))
    try:
        return config.validate(), hparams.validate(), settings.validate()
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def run_record_settings(data: Any, source: str) -> dict[str, Any]:
    """A run's config.json as flat settings for `--config` (config, hyperparameters and seed)."""
    config, hparams, settings = parse_run_record(data, source)
    return {**flat_settings(config, hparams), "seed": settings.seed}


def load_run_record(run_dir: Path) -> tuple[A2CConfig, HParams, RunSettings]:
    """Read RUN_DIR/config.json back, or raise CheckpointError saying what is wrong with it."""
    if not run_dir.exists():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} is a file, not a run directory")
    path = run_dir / "config.json"
    if not path.exists():
        raise CheckpointError(f"{str(path)!r} is missing: {str(run_dir)!r} is not an a2c-jax run directory")
    try:
        data = read_json(path, "config")
    except ConfigError as err:
        raise CheckpointError(f"{str(path)!r} is corrupt ({err})") from None
    if isinstance(data, dict) and "betas" in data and "config" not in data:
        raise CheckpointError(
            f"{str(run_dir)!r} is an RLHF run (`a2c-jax rlhf`), not a training run: its results are in summary.json "
            "and samples.json"
        )
    try:
        return parse_run_record(data, f"{str(path)!r}")
    except ConfigError as err:
        raise CheckpointError(f"{str(path)!r} is corrupt ({err})") from None


def check_output_dir(path: Path, field: str, create: bool = True) -> None:
    """ConfigError (one line) unless `path` is, or can be made, a writable directory; creates it when
    `create`, else only checks that its nearest existing ancestor is a writable directory."""
    shown = f"{field}={str(path)!r}"
    try:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{shown} is a file: must be a directory")
        if not create:
            ancestor = path.absolute()
            while not ancestor.exists():
                ancestor = ancestor.parent
            if not ancestor.is_dir():
                raise ConfigError(f"{shown} cannot be created: {str(ancestor)!r} is a file")
            if not os.access(ancestor, os.W_OK):
                raise ConfigError(f"{shown} cannot be created: {str(ancestor)!r} is not writable")
            return
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".a2c-jax-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"{shown} cannot be written ({err.strerror or err})") from None


def restartable(run_dir: Path) -> bool:
    """A run directory that never reached its first checkpoint (nothing in it is worth keeping)."""
    return (run_dir / "config.json").exists() and latest_step(run_dir / "checkpoints") is None


def prepare_fresh_dir(run_dir: Path, resume: bool) -> None:
    """Check that a fresh run may use `run_dir`: empty, new, or a run that never checkpointed (cleared)."""
    if resume or (run_dir.is_dir() and restartable(run_dir)):
        if entries(run_dir):
            warn(f"{str(run_dir)!r} never reached its first checkpoint: starting it again from update 0")
        for stale in ("metrics.jsonl", "summary.json", "learning_curve.png"):
            (run_dir / stale).unlink(missing_ok=True)
    elif entries(run_dir):
        raise ConfigError(
            f"run_dir={str(run_dir)!r} already exists and is not empty: resume it with --resume or choose another"
        )
