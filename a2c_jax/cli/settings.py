"""Settings resolution shared by the commands: preset < `--config FILE` < flags given on the command
line, the run options, the compilation cache."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from a2c_jax.config import (
    CONFIG_NAMES,
    HPARAM_NAMES,
    A2CConfig,
    ConfigError,
    HParams,
    PresetName,
    check_seed,
    coerce_setting,
    coerce_value,
    split_overrides,
)
from a2c_jax.config import preset as make_preset


def cache_dir() -> Path:
    """Where the persistent compilation cache lives: $A2C_JAX_CACHE_DIR or the user cache dir."""
    if os.environ.get("A2C_JAX_CACHE_DIR"):
        return Path(os.environ["A2C_JAX_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "a2c_jax" / "xla"


def enable_compile_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache so a second run skips most compilation; a cache
    directory that cannot be written is one warning line and the run compiles without it (JAX would
    print a warning of its own at every compile).

    Returns the store of exported programs beside it (`runs.programs`: a warm `a2c-jax train` loads its
    programs instead of tracing them), or None when the cache is off.
    """
    import jax

    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".a2c-jax-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        print(
            f"a2c-jax: warning: the compilation cache {str(directory)!r} cannot be written "
            f"({err.strerror or err}); compiling without it",
            file=sys.stderr,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return directory / "programs"


MAX_SETTINGS_BYTES = 2**20
"""The largest --config file read (a settings file is a few hundred bytes; /dev/zero is not one)."""


def read_settings_file(path: Path) -> dict[str, Any]:
    """Typed flat settings from a JSON file: flat keys (a `--config` or best.json), or a run's config.json.

    Every value is checked against its field's type (ConfigError naming the file and the field), so a
    file never silently means something else than it says.
    """
    from a2c_jax.runs.records import read_json

    if path.exists() and not path.is_dir() and (not path.is_file() or path.stat().st_size > MAX_SETTINGS_BYTES):
        what = "not a regular file" if not path.is_file() else f"larger than {MAX_SETTINGS_BYTES // 2**20} MiB"
        raise ConfigError(f"config={str(path)!r} is invalid: {what}; must be a JSON file of settings")
    data = read_json(path, "config")
    source = f"config {str(path)!r}"
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a JSON object of settings, not {type(data).__name__}")
    if "config" in data and isinstance(data["config"], dict):  # a run's config.json
        from a2c_jax.runs.runner import run_record_settings

        flat = run_record_settings(data, source)
    else:
        flat = dict(data)
    out: dict[str, Any] = {}
    for name, value in flat.items():
        if value is None and name != "seed":
            continue
        try:
            if name == "seed":
                out[name] = check_seed("seed", value)
            elif name == "preset":
                out[name] = coerce_value("preset", PresetName, value)
            else:
                out[name] = coerce_setting(name, value)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return out


def resolve_train_args(args: Any) -> tuple[A2CConfig, HParams, dict[str, Any]]:
    """Merge preset < config file < flags into (A2CConfig, HParams, run options).

    `args` is any of the argument dataclasses; fields it lacks count as not given.
    """
    from_file = read_settings_file(args.config) if args.config is not None else {}
    preset_name = args.preset or from_file.pop("preset", None) or "default"
    seed = getattr(args, "seed", None)
    seed = seed if seed is not None else from_file.pop("seed", 0)
    from_file.pop("preset", None)
    from_file.pop("seed", None)
    flags = {k: getattr(args, k, None) for k in CONFIG_NAMES + HPARAM_NAMES}
    flags = {k: v for k, v in flags.items() if v is not None}
    env_id = flags.get("env_id") or from_file.get("env_id") or "CartPole-v1"
    config, hparams = make_preset(preset_name, env_id)
    cfg_over, hp_over = split_overrides({**from_file, **flags})
    config = dataclasses.replace(config, **cfg_over).validate()
    hparams = hparams._replace(**hp_over).validate()
    options = {"seed": seed, "preset": preset_name}
    return config, hparams, options


def default_run_dir(env_id: str, seed: int) -> Path:
    """runs/ENV-seedN-YYYYmmdd-HHMMSS (with a suffix if that exists)."""
    base = Path("runs") / f"{env_id}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


RUN_OPTIONS = ("eval_episodes", "log_points", "checkpoint_seconds", "devices", "log")
RESUME_MAY_CHANGE = ("total_timesteps", *RUN_OPTIONS)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _run_settings(args: Any, base: Any) -> Any:
    """`base` RunSettings with the run options given on the command line."""
    given = {n: getattr(args, n) for n in RUN_OPTIONS if getattr(args, n) is not None}
    return dataclasses.replace(base, progress=not args.quiet, **given).validate()
