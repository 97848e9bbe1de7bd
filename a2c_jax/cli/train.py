"""`a2c-jax train` and `a2c-jax train --resume DIR`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from a2c_jax.cli.settings import (
    RESUME_MAY_CHANGE,
    _flag,
    _run_settings,
    default_run_dir,
    enable_compile_cache,
    resolve_train_args,
)
from a2c_jax.config import (
    CONFIG_NAMES,
    HPARAM_NAMES,
    ConfigError,
)


def resume_command(args: Any, programs: Path | None = None) -> int:
    """`a2c-jax train --resume DIR`: continue with the saved settings; only the total and run options change."""
    from a2c_jax.runs.runner import load_run_record, train_run

    refused = [n for n in ("preset", "seed", "config", "run_dir") if getattr(args, n) is not None]
    refused += [n for n in CONFIG_NAMES + HPARAM_NAMES if getattr(args, n) is not None and n not in RESUME_MAY_CHANGE]
    if refused:
        raise ConfigError(
            f"--resume continues a run with its saved settings: {', '.join(map(_flag, refused))} cannot be given "
            f"with it (allowed: {', '.join(map(_flag, RESUME_MAY_CHANGE))}, --quiet)"
        )
    config, hparams, saved = load_run_record(args.resume)
    if args.total_timesteps is not None and args.total_timesteps != config.total_timesteps:
        if config.lr_schedule == "linear":
            raise ConfigError(
                f"total_timesteps={args.total_timesteps} cannot change on --resume with lr_schedule='linear': "
                f"its learning rate decays to zero over the original {config.total_timesteps} steps"
            )
        config = dataclasses.replace(config, total_timesteps=args.total_timesteps).validate()
    train_run(config, hparams, args.resume, _run_settings(args, saved), resume=True, programs=programs)
    return 0


def train_command(args: Any) -> int:
    """`a2c-jax train`."""
    from a2c_jax.runs.runner import RunSettings, train_run

    programs = enable_compile_cache() if args.compile_cache else None
    if args.resume is not None:
        return resume_command(args, programs)
    config, hparams, options = resolve_train_args(args)
    settings = _run_settings(args, RunSettings(seed=options["seed"]))
    run_dir = args.run_dir or default_run_dir(config.env_id, settings.seed)
    train_run(config, hparams, run_dir, settings, programs=programs)
    return 0
