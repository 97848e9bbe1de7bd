"""`a2c-jax train | eval`: a tyro CLI generated from A2CConfig and HParams.

Every A2CConfig and HParams field is a flag of its own (`--lr`, `--gamma`, `--num-envs`, ...).
Values resolve in this order: preset (per env) < `--config FILE` < flags given on the command line.
Bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from a2c_jax.config import (
    CONFIG_NAMES,
    HPARAM_NAMES,
    A2CConfig,
    ConfigError,
    HParams,
    split_overrides,
)
from a2c_jax.config import preset as make_preset

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 1
EXIT_INTERRUPTED = 130


def attribute_docs(cls: type) -> dict[str, str]:
    """`name: text` entries of the Attributes section of a class docstring (continuations joined)."""
    docs: dict[str, str] = {}
    name = None
    for line in (cls.__doc__ or "").split("Attributes:", 1)[-1].splitlines():
        head, sep, text = line.strip().partition(": ")
        if sep and head.replace("_", "").replace(" / ", "").isalnum() and line.startswith(" " * 8 + head):
            name = head
            docs[name] = text
        elif name and line.strip():
            docs[name] += " " + line.strip()
    return docs


def _optional_fields() -> list[tuple[str, Any, Any]]:
    """One optional flag per A2CConfig and HParams field (None = keep the preset's value)."""
    hints = typing.get_type_hints(A2CConfig)
    docs = {**attribute_docs(A2CConfig), **attribute_docs(HParams)}
    fields: list[tuple[str, Any, Any]] = []
    for name in CONFIG_NAMES + HPARAM_NAMES:
        kind = hints[name] if name in CONFIG_NAMES else float
        annotated = Annotated[kind | None, tyro.conf.arg(help=docs.get(name, ""))]  # type: ignore[valid-type]
        fields.append((name, annotated, dataclasses.field(default=None)))
    return fields


@dataclasses.dataclass
class _RunOptions:
    """Options of the run itself (not of the algorithm)."""

    preset: Literal["default", "sb3", "zoo"] | None = None
    """starting values: 'default' (fast), 'sb3' (SB3 A2C defaults) or 'zoo' (RL-Zoo tuned); default 'default'"""
    seed: int | None = None
    """PRNG seed (default 0)"""
    config: Path | None = None
    """JSON file of settings (flat, or a run's config.json); flags given here override it"""
    run_dir: Path | None = None
    """output directory (default runs/ENV-seedN-TIME)"""
    resume: Path | None = None
    """continue the run in this directory from its newest checkpoint"""
    eval_episodes: int = 32
    """greedy episodes in the final evaluation"""
    log_points: int = 100
    """about how many records metrics.jsonl gets (one per compiled chunk)"""
    checkpoint_seconds: float = 60.0
    """seconds between periodic checkpoints"""
    quiet: bool = False
    """no progress bar"""
    compile_cache: bool = True
    """use JAX's persistent compilation cache (in the user cache directory)"""


TrainArgs = dataclasses.make_dataclass("TrainArgs", _optional_fields(), bases=(_RunOptions,))
TrainArgs.__doc__ = "Train an A2C agent; writes config.json, metrics.jsonl, checkpoints, plots, summary.json."


@dataclasses.dataclass
class EvalArgs:
    """Restore a run's checkpoint and evaluate it."""

    run_dir: tyro.conf.Positional[Path]
    """the run directory written by `a2c-jax train`"""
    episodes: int = 32
    """number of episodes"""
    stochastic: bool = False
    """sample actions instead of taking the greedy (mode) action"""
    seed: int = 0
    """PRNG seed of the evaluation episodes"""
    gif: Path | None = None
    """also render one greedy episode to this GIF (environments gymnax can draw)"""
    compile_cache: bool = True
    """use JAX's persistent compilation cache"""


def cache_dir() -> Path:
    """Where the persistent compilation cache lives: $A2C_JAX_CACHE_DIR or the user cache dir."""
    if os.environ.get("A2C_JAX_CACHE_DIR"):
        return Path(os.environ["A2C_JAX_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "a2c_jax" / "xla"


def enable_compile_cache() -> None:
    """Turn on JAX's persistent compilation cache so a second run skips most compilation."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(cache_dir()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _read_config_file(path: Path) -> dict[str, Any]:
    """Flat settings from a JSON file: either flat keys, or a run's config.json layout."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config={str(path)!r} does not exist") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"config={str(path)!r} is not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config={str(path)!r} must hold a JSON object of settings")
    if "config" in data and isinstance(data["config"], dict):  # a run's config.json
        flat = {**data["config"], **data.get("hparams", {})}
        flat["seed"] = data.get("settings", {}).get("seed")
        return {k: v for k, v in flat.items() if v is not None}
    return data


def resolve_train_args(args: Any) -> tuple[A2CConfig, HParams, dict[str, Any]]:
    """Merge preset < config file < flags into (A2CConfig, HParams, run options)."""
    from_file = _read_config_file(args.config) if args.config is not None else {}
    preset_name = args.preset or from_file.pop("preset", None) or "default"
    seed = args.seed if args.seed is not None else from_file.pop("seed", 0)
    from_file.pop("preset", None)
    from_file.pop("seed", None)
    flags = {k: getattr(args, k) for k in CONFIG_NAMES + HPARAM_NAMES if getattr(args, k) is not None}
    env_id = flags.get("env_id") or from_file.get("env_id") or "CartPole-v1"
    config, hparams = make_preset(preset_name, env_id)
    cfg_over, hp_over = split_overrides({**from_file, **flags})
    config = dataclasses.replace(config, **cfg_over).validate()
    hparams = dataclasses.replace(hparams, **hp_over).validate()
    options = {"seed": seed, "preset": preset_name}
    return config, hparams, options


def default_run_dir(env_id: str, seed: int) -> Path:
    """runs/ENV-seedN-YYYYmmdd-HHMMSS (with a suffix if that exists)."""
    base = Path("runs") / f"{env_id}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def train_command(args: Any) -> int:
    """`a2c-jax train`."""
    from a2c_jax.runner import RunSettings, train_run

    if args.compile_cache:
        enable_compile_cache()
    settings_kw = dict(
        eval_episodes=args.eval_episodes,
        log_points=args.log_points,
        checkpoint_seconds=args.checkpoint_seconds,
        progress=not args.quiet,
    )
    if args.resume is not None:
        from a2c_jax.runner import load_run_record

        _, _, saved = load_run_record(args.resume)
        settings = dataclasses.replace(saved, progress=not args.quiet)
        train_run(A2CConfig(), HParams(), args.resume, settings, resume=True)
        return 0
    config, hparams, options = resolve_train_args(args)
    settings = RunSettings(seed=options["seed"], **settings_kw).validate()
    run_dir = args.run_dir or default_run_dir(config.env_id, settings.seed)
    print(f"a2c-jax: training {config.env_id} (preset {options['preset']}, seed {settings.seed}) -> {run_dir}")
    train_run(config, hparams, run_dir, settings)
    return 0


def eval_command(args: EvalArgs) -> int:
    """`a2c-jax eval RUN_DIR`."""
    import jax
    import numpy as np

    from a2c_jax.checkpoint import restore_checkpoint
    from a2c_jax.evaluate import evaluate_jit, record_episode
    from a2c_jax.runner import load_run_record
    from a2c_jax.train import init_state

    if args.compile_cache:
        enable_compile_cache()
    if args.episodes <= 0:
        raise ConfigError(f"episodes={args.episodes!r} is invalid: must be a positive integer")
    config, hparams, settings = load_run_record(args.run_dir)
    like = jax.eval_shape(functools.partial(init_state, config), hparams.as_arrays(), jax.random.PRNGKey(settings.seed))
    state, meta, _ = restore_checkpoint(args.run_dir / "checkpoints", like)
    key = jax.random.PRNGKey(args.seed)
    result = evaluate_jit(config, state.params, state.env_state.obs_rms, key, args.episodes, not args.stochastic)
    returns = np.asarray(result.returns, np.float64)
    mode = "stochastic" if args.stochastic else "greedy"
    print(
        f"{config.env_id} after {meta['env_steps']:,} steps: {mode} return "
        f"{returns.mean():.2f} +- {returns.std():.2f} over {args.episodes} episodes"
    )
    if args.gif is not None:
        from a2c_jax.plotting import render_gif

        states, rewards = record_episode(config, state.params, state.env_state.obs_rms, key)
        render_gif(config.env_id, states, rewards, args.gif)
        print(f"wrote {args.gif} ({len(states)} frames)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `a2c-jax` command; returns the exit status."""
    from a2c_jax.runner import TrainingDiverged, TrainingInterrupted

    train_cmd: Any = Annotated[TrainArgs, tyro.conf.subcommand("train", description=TrainArgs.__doc__)]
    eval_cmd: Any = Annotated[EvalArgs, tyro.conf.subcommand("eval", description=EvalArgs.__doc__)]
    args = tyro.cli(
        train_cmd | eval_cmd,  # type: ignore[operator]
        args=argv,
        prog="a2c-jax",
        description="Pure-functional A2C in JAX on gymnax environments.",
    )
    try:
        return eval_command(args) if isinstance(args, EvalArgs) else train_command(args)
    except ConfigError as err:
        print(f"a2c-jax: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingDiverged as err:
        print(f"a2c-jax: training diverged: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as err:
        print(f"a2c-jax: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())


if __name__ == "__main__":
    run()
