"""`a2c-jax train | eval`: a tyro CLI generated from A2CConfig and HParams.

Every A2CConfig and HParams field is a flag of its own (`--lr`, `--gamma`, `--num-envs`, ...).
Values resolve in this order: preset (per env) < `--config FILE` < flags given on the command line.
Bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import re
import sys
import time
import typing
from collections.abc import MutableMapping
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

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
    flat_settings,
    split_overrides,
)
from a2c_jax.config import preset as make_preset
from a2c_jax.rlhf.config import RLHFConfig

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 1
EXIT_INTERRUPTED = 130
EXIT_FAULT = 1


def attribute_docs(cls: type) -> dict[str, str]:
    """`name: text` entries of the Attributes section of a class docstring (continuations joined).

    An entry is a line at the section's own indentation (whatever it is) that starts with a field
    name and ": "; deeper lines continue it; the section ends at the first line less indented.
    """
    _, found, section = inspect.cleandoc(cls.__doc__ or "").partition("Attributes:")
    lines = [line for line in section.splitlines() if line.strip()] if found else []
    depth = lambda line: len(line) - len(line.lstrip())
    docs: dict[str, str] = {}
    name = None
    for line in lines:
        head, sep, text = line.strip().partition(": ")
        if depth(line) < depth(lines[0]):
            break
        if depth(line) == depth(lines[0]) and sep and head.isidentifier():
            name = head
            docs[name] = text
        elif name:
            docs[name] += " " + line.strip()
    return docs


def _preset_hint(name: str) -> str:
    """The help's default note: values come from the preset; the 'default' preset's CartPole value."""
    config, hparams = make_preset("default", "CartPole-v1")
    value = getattr(config, name) if name in CONFIG_NAMES else float(getattr(hparams, name))
    shown = (
        " ".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else value
    )
    return f"(default: the preset's; 'default' on CartPole-v1: {shown})"


def _optional_fields() -> list[tuple[str, Any, Any]]:
    """One optional flag per A2CConfig and HParams field (None = keep the preset's value)."""
    hints = typing.get_type_hints(A2CConfig)
    docs = {**attribute_docs(A2CConfig), **attribute_docs(HParams)}
    fields: list[tuple[str, Any, Any]] = []
    for name in CONFIG_NAMES + HPARAM_NAMES:
        kind = hints[name] if name in CONFIG_NAMES else float
        arg = tyro.conf.arg(help=docs.get(name, ""), help_behavior_hint=_preset_hint(name))
        annotated = Annotated[kind | None, arg]  # type: ignore[valid-type]
        fields.append((name, annotated, dataclasses.field(default=None)))
    return fields


@dataclasses.dataclass
class _ClusterOptions:
    """Devices and processes (shared by train, sweep and pbt)."""

    devices: str | None = None
    """'all' or a device count: train shards its envs, sweep and pbt their members, over them (on a CPU
    one device per core; default: train 1, sweep and pbt split their members over the cores)"""
    coordinator_address: str | None = None
    """multi-process run: host:port of process 0's coordinator (with --num-processes and --process-id)"""
    num_processes: int | None = None
    """multi-process run: how many processes take part"""
    process_id: int | None = None
    """multi-process run: this process's index, 0 .. num_processes - 1"""
    distributed: bool = False
    """multi-process run: detect the processes from the cluster's environment (SLURM, TPU pods)"""
    distributed_timeout: int = 60
    """seconds to wait for every process of a multi-process run to join"""


@dataclasses.dataclass
class _RunOptions(_ClusterOptions):
    """Options of the run itself (not of the algorithm)."""

    preset: PresetName | None = None
    """starting values: 'default' (fast), 'sb3' (SB3 A2C defaults) or 'zoo' (RL-Zoo tuned); default 'default'"""
    seed: int | None = None
    """PRNG seed (default 0)"""
    config: Path | None = None
    """JSON file of settings (flat, or a run's config.json); flags given here override it"""
    run_dir: Path | None = None
    """output directory (default runs/ENV-seedN-TIME)"""
    resume: Path | None = None
    """continue the run in this directory from its newest checkpoint"""
    eval_episodes: int | None = None
    """greedy episodes in the final evaluation (default 32)"""
    log_points: int | None = None
    """about how many records metrics.jsonl gets, one per compiled chunk (default 100)"""
    checkpoint_seconds: float | None = None
    """seconds between periodic checkpoints (default 60)"""
    log: str | None = None
    """experiment trackers that mirror metrics.jsonl, comma-separated: 'tensorboard' (RUN_DIR/tensorboard),
    'wandb' (offline in RUN_DIR/wandb unless WANDB_MODE says otherwise); each needs its extra"""
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


@dataclasses.dataclass
class _PopulationArgs(_ClusterOptions):
    """Options shared by `sweep` and `pbt`."""

    preset: PresetName | None = None
    """starting values for everything not swept (default 'default')"""
    config: Path | None = None
    """JSON file of base settings (e.g. a best.json); flags given here override it"""
    grid: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """a swept name and its values, e.g. --grid lr=1e-4,3e-4 (repeat for more names)"""
    ranges: Annotated[tyro.conf.UseAppendAction[tuple[str, ...]], tyro.conf.arg(name="range")] = ()
    """a sampling range for --random, e.g. --range lr=1e-5:1e-2:log"""
    random: int = 0
    """number of random settings drawn from the ranges"""
    seeds: int = 4
    """seeds per setting (seeds 0..N-1)"""
    sample_seed: int = 0
    """seed of the random settings (and of PBT's choices)"""
    out: Path | None = None
    """output directory (default sweeps/ENV-TIME)"""
    eval_episodes: int = 16
    """greedy evaluation episodes per member"""
    log: str = ""
    """experiment trackers, comma-separated: 'tensorboard' writes every member as a TensorBoard run under
    OUT/tensorboard; 'wandb' one W&B run (offline unless WANDB_MODE says otherwise) with a members table and
    the members' curves; each needs its extra"""
    quiet: bool = False
    """no progress bar"""
    compile_cache: bool = True
    """use JAX's persistent compilation cache"""


@dataclasses.dataclass
class _SweepOptions(_PopulationArgs):
    max_population: int | None = None
    """most members per compiled chunk (default: as many as fit in memory)"""
    sampler: Literal["tpe", "cmaes", "gp", "random", "grid"] | None = None
    """Bayesian search with Optuna (extra 'tune'): each round asks --batch trials, trains them x --seeds as one
    population and tells each trial its IQM; --grid values are categorical choices, --range names ranges"""
    trials: int | None = None
    """with --sampler: trials of the study in all, counted across every worker that shares it"""
    batch: int | None = None
    """with --sampler: trials per round, trained together (default 8)"""
    storage: str | None = None
    """with --sampler: the study's storage, shareable by many workers: a database URL (sqlite:///study.db,
    postgresql://user@host/db, mysql://...) or journal:PATH (default: sqlite OUT/study.db)"""
    study_name: str | None = None
    """with --sampler: the study's name in --storage (default: OUT's name); workers join a study by its name"""
    resume: Path | None = None
    """continue the study of this sweep directory with its saved settings (--trials and --batch may change)"""
    heartbeat: int = 60
    """with --sampler and a database: seconds between a worker's heartbeats; a trial silent for twice that is
    failed and queued again"""


@dataclasses.dataclass
class _PBTOptions(_PopulationArgs):
    interval: int | None = None
    """updates between exploit/explore steps (default: a tenth of the run)"""
    fraction: float = 0.25
    """share of the population replaced (and copied from) at each step"""


# Every A2CConfig / HParams field is a flag of sweep and pbt too: the base every member starts from.
SweepArgs = dataclasses.make_dataclass("SweepArgs", _optional_fields(), bases=(_SweepOptions,))
SweepArgs.__doc__ = "Train seeds x settings (grid and/or random search) as one vmapped program per static config."
PBTArgs = dataclasses.make_dataclass("PBTArgs", _optional_fields(), bases=(_PBTOptions,))
PBTArgs.__doc__ = "Population-based training: exploit and explore every --interval updates, inside one program."


@dataclasses.dataclass(frozen=True)
class RLHFArgs(RLHFConfig):
    """Token-level A2C for language-model alignment: a reference LM, a reward model from noisy
    preferences, then A2C against the reward model with a KL penalty to the reference (all generated
    in code, no downloads). Writes config.json, metrics.jsonl, summary.json, samples.json, rlhf.png."""

    out: Path = Path("runs/rlhf")
    """output directory (refused when it holds a run of other settings)"""
    stage_dir: Path | None = None
    """where the reference and reward model are cached by their settings (default: OUT/../rlhf-stages)"""
    quiet: bool = False
    """no progress bars"""
    compile_cache: bool = True
    """use JAX's persistent compilation cache (in the user cache directory)"""
    log: str = ""
    """experiment trackers, comma-separated: 'tensorboard' (one run per beta under OUT/tensorboard),
    'wandb' (one offline run in OUT/wandb); the metrics against A2C updates, written when the run ends"""


@dataclasses.dataclass(frozen=True)
class RLHFSweepArgs(RLHFArgs):
    """The KL trade-off: one A2C policy per beta, trained as one vmapped program against the same
    reference and reward model; adds tradeoff.png (gold reward vs KL; proxy vs gold per beta)."""

    out: Path = Path("runs/rlhf-sweep")
    """output directory (refused when it holds a run of other settings)"""
    betas: str = "0,0.02,0.1,0.5"
    """comma-separated KL coefficients, one policy each (--beta is ignored)"""


def parse_betas(text: str) -> tuple[float, ...]:
    """'0,0.02,0.1' -> (0.0, 0.02, 0.1); ConfigError naming --betas otherwise."""
    try:
        betas = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"betas={text!r} is invalid: must be comma-separated numbers >= 0") from None
    if not betas:
        raise ConfigError(f"betas={text!r} is invalid: must name at least one beta")
    return betas


def rlhf_command(args: RLHFArgs) -> int:
    """`a2c-jax rlhf` and `a2c-jax rlhf-sweep`: run the chain, print the outcome per beta."""
    config = RLHFConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RLHFConfig)})
    betas = parse_betas(args.betas) if isinstance(args, RLHFSweepArgs) else None
    config.validate()
    from a2c_jax.runs.trackers import parse_trackers

    trackers = parse_trackers(args.log)
    from a2c_jax.runs.runner import check_output_dir

    check_output_dir(args.out, "out", create=False)
    stage_dir = args.stage_dir or args.out.parent / "rlhf-stages"
    check_output_dir(stage_dir, "stage_dir", create=False)
    if args.compile_cache:
        enable_compile_cache()
    from a2c_jax.rlhf.run import run_rlhf

    say = (lambda _: None) if args.quiet else print
    summary = run_rlhf(config, args.out, stage_dir, betas, args.quiet, say)
    rm = summary["reward_model_stage"]
    print(
        f"reward model: held-out pair accuracy {rm['held_out_label_accuracy']:.3f} against the noisy labels, "
        f"{rm['held_out_gold_accuracy']:.3f} against the gold ordering"
    )
    for member in summary["members"]:
        ref, final = member["reference"], member["final"]
        print(
            f"beta {member['beta']:g}: gold reward {ref['gold']:.3f} -> {final['gold']:.3f}, reward-model score "
            f"{ref['score']:.3f} -> {final['score']:.3f}, KL {final['k1']:.2f} nats/sequence, "
            f"length {final['length']:.1f}"
        )
    if trackers:
        from a2c_jax.runs.records import MetricsLog
        from a2c_jax.runs.trackers import log_rlhf

        log_rlhf(trackers, args.out, MetricsLog(args.out / "metrics.jsonl").read())
    print(f"wrote {args.out} in {summary['seconds']['total']:.0f} s")
    return 0


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


def read_settings_file(path: Path) -> dict[str, Any]:
    """Typed flat settings from a JSON file: flat keys (a `--config` or best.json), or a run's config.json.

    Every value is checked against its field's type (ConfigError naming the file and the field), so a
    file never silently means something else than it says.
    """
    from a2c_jax.runs.records import read_json

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


def resume_command(args: Any) -> int:
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
    train_run(config, hparams, args.resume, _run_settings(args, saved), resume=True)
    return 0


def train_command(args: Any) -> int:
    """`a2c-jax train`."""
    from a2c_jax.runs.runner import RunSettings, train_run

    if args.compile_cache:
        enable_compile_cache()
    if args.resume is not None:
        return resume_command(args)
    config, hparams, options = resolve_train_args(args)
    settings = _run_settings(args, RunSettings(seed=options["seed"]))
    run_dir = args.run_dir or default_run_dir(config.env_id, settings.seed)
    train_run(config, hparams, run_dir, settings)
    return 0


def eval_command(args: EvalArgs) -> int:
    """`a2c-jax eval RUN_DIR`."""
    import jax
    import numpy as np

    from a2c_jax.core.evaluate import evaluate_jit, record_episode
    from a2c_jax.core.train import build_agent, init_state
    from a2c_jax.runs.checkpoint import restore_checkpoint
    from a2c_jax.runs.resources import check_fits
    from a2c_jax.runs.runner import check_output_dir, load_run_record, warn

    if args.compile_cache:
        enable_compile_cache()
    if args.episodes <= 0:
        raise ConfigError(f"episodes={args.episodes!r} is invalid: must be a positive integer")
    check_seed("seed", args.seed)
    config, hparams, settings = load_run_record(args.run_dir)
    agent = build_agent(config)
    check_fits(agent, 1, args.episodes)
    if args.gif is not None:
        if args.gif.is_dir():
            raise ConfigError(f"gif={str(args.gif)!r} is a directory: give a file name like episode.gif")
        check_output_dir(args.gif.parent, "gif")
    like = jax.eval_shape(functools.partial(init_state, agent), hparams.as_arrays(), jax.random.PRNGKey(settings.seed))
    state, meta, _ = restore_checkpoint(args.run_dir / "checkpoints", like, warn=warn)
    key = jax.random.PRNGKey(args.seed)
    result = evaluate_jit(agent, state.params, state.env_state.obs_rms, key, args.episodes, not args.stochastic)
    returns = np.asarray(result.returns, np.float64)
    mode = "stochastic" if args.stochastic else "greedy"
    print(
        f"{config.env_id} after {meta['env_steps']:,} steps: {mode} return "
        f"{returns.mean():.2f} +- {returns.std():.2f} over {args.episodes} episodes"
    )
    if args.gif is not None:
        from a2c_jax.runs.plots import render_gif

        states, rewards = record_episode(agent, state.params, state.env_state.obs_rms, key)
        render_gif(config.env_id, states, rewards, args.gif)
        print(f"wrote {args.gif} ({len(states)} frames)")
    return 0


def _population_setup(args: _PopulationArgs, kind: str) -> tuple[Any, list[Any], list[Any], Path, Any]:
    """Validate everything a sweep or PBT run needs before anything compiles or is written; returns
    (config, settings, members, out, the sweep.Programs holding each static config's Agent)."""
    from a2c_jax.population.space import check_population_size, expand_settings, parse_grid, parse_ranges
    from a2c_jax.population.sweep import Programs, make_members
    from a2c_jax.runs.resources import check_fits
    from a2c_jax.runs.runner import check_output_dir

    for name in ("seeds", "eval_episodes"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"{name}={getattr(args, name)!r} is invalid: must be a positive integer")
    check_seed("sample_seed", args.sample_seed)
    config, hparams, _ = resolve_train_args(args)
    grid, ranges = parse_grid(args.grid), parse_ranges(args.ranges)
    check_population_size(grid, args.random, args.seeds)
    settings = expand_settings(grid, ranges, args.random, args.sample_seed)
    programs = Programs()
    members = make_members(config, hparams, settings, list(range(args.seeds)), programs)
    for static in {m.config for m in members}:
        check_fits(programs.agent(static), static.num_updates, args.eval_episodes)
    out = args.out or Path(f"{kind}s") / f"{config.env_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"out={str(out)!r} already exists and is not empty: choose another directory")
    check_output_dir(out, "out", create=False)
    return config, settings, members, out, programs


def _print_table(rows: list[dict[str, Any]], names: list[str], title: str, limit: int = 20) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ["rank", *names, "IQM return", "95% CI", "mean", "seeds", "diverged"]:
        table.add_column(col, justify="right")
    for rank, r in enumerate(rows[:limit], start=1):
        values = [f"{r[n]:.4g}" if isinstance(r[n], float) else str(r[n]) for n in names]
        ci = f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}]"
        bad = f"[red]{r['diverged']}[/red]" if r["diverged"] else "0"
        table.add_row(str(rank), *values, f"{r['iqm']:.1f}", ci, f"{r['mean']:.1f}", str(r["seeds"]), bad)
    Console().print(table)


def sweep_command(args: Any) -> int:
    """`a2c-jax sweep`."""
    if args.sampler is not None or args.resume is not None:
        return study_command(args)
    for name in ("trials", "batch", "storage", "study_name"):
        if getattr(args, name) is not None:
            raise ConfigError(f"{_flag(name)} needs --sampler (an Optuna study); a plain sweep trains every setting")

    from a2c_jax.population.sweep import best_config, member_rows, rank_settings, run_sweep
    from a2c_jax.runs.distributed import is_primary
    from a2c_jax.runs.plots import plot_sweep
    from a2c_jax.runs.records import count_bar, write_population
    from a2c_jax.runs.runner import check_output_dir
    from a2c_jax.runs.trackers import log_population, parse_trackers

    if args.max_population is not None and args.max_population <= 0:
        raise ConfigError(f"max_population={args.max_population!r} is invalid: must be a positive integer")
    trackers = parse_trackers(args.log)
    if args.compile_cache:
        enable_compile_cache()
    config, settings, members, out, programs = _population_setup(args, "sweep")
    names = list(settings[0])
    check_output_dir(out, "out")
    print(f"a2c-jax: sweeping {config.env_id}: {len(settings)} settings x {args.seeds} seeds -> {out}")
    with count_bar(len(members), "members", not args.quiet and is_primary()) as advance:
        result = run_sweep(
            members, settings, args.eval_episodes, args.max_population, advance, args.devices, programs=programs
        )
    if not is_primary():
        return 0
    ranked = rank_settings(result)
    out.mkdir(parents=True, exist_ok=True)
    rows = member_rows(result)
    best = best_config(result, ranked)
    arrays = {"env_steps": result.curve_steps, "returns": result.curves, "final_return": result.final_return,
              "setting": [m.setting for m in members], "seed": [m.seed for m in members]}  # fmt: skip
    write_population(out, {"results.csv": rows, "ranking.csv": ranked}, arrays, best)
    log_population(trackers, out, "sweep", rows, result.curve_steps, {"episode_return": result.curves})
    plot_sweep(ranked, names, out / "sweep.png", f"A2C sweep on {config.env_id}")
    _print_table(ranked, names, f"{config.env_id}: final greedy return, IQM over {args.seeds} seeds")
    print(
        f"{len(members)} members in {result.wall_seconds:.1f}s ({result.groups} compiled program(s), compile "
        f"{result.compile_seconds:.1f}s{f', split over {result.devices} devices' if result.devices > 1 else ''})"
        + (f"; best setting -> {out / 'best.json'}" if best is not None else "")
    )
    if result.diverged.any():
        print(
            f"a2c-jax: warning: {int(result.diverged.sum())} of {len(members)} members diverged (non-finite loss or "
            "parameters); their settings are ranked last and never chosen as best",
            file=sys.stderr,
        )
    if best is None:
        return _error("every setting diverged: no best.json written", EXIT_FAULT)
    return 0


STUDY_MAY_CHANGE = ("trials", "batch", "quiet")
STUDY_OPTIONS = ("grid", "ranges", "seeds", "sample_seed", "eval_episodes", "log", "max_population", "devices",
                 "sampler", "trials", "batch", "heartbeat")  # fmt: skip
"""The options search.json keeps for --resume (the base settings go to base.json)."""
DEFAULT_BATCH = 8


def _resumed_study_args(args: Any) -> Any:
    """The saved arguments of the study sweep in `args.resume`, with --trials / --batch applied."""
    from a2c_jax.runs.records import read_json

    path = args.resume / "search.json"
    if not path.is_file():
        raise ConfigError(f"resume={str(args.resume)!r} holds no search.json: not a `sweep --sampler` directory")
    given = [n for n in ("preset", "config", "out", "sampler", "storage", "study_name") if getattr(args, n) is not None]
    given += [n for n in CONFIG_NAMES + HPARAM_NAMES if getattr(args, n) is not None]
    if given or args.grid or args.ranges:
        shown = ", ".join(map(_flag, given or ["grid" if args.grid else "range"]))
        raise ConfigError(
            f"--resume continues a study with its saved settings: {shown} cannot be given with it "
            f"(allowed: {', '.join(map(_flag, STUDY_MAY_CHANGE))})"
        )
    saved = read_json(path, "resume")
    if not isinstance(saved, dict) or not isinstance(saved.get("options"), dict):
        raise ConfigError(f"resume: {str(path)!r} is not a search.json written by `a2c-jax sweep --sampler`")
    options = dict(saved["options"])
    options.update(config=args.resume / "base.json", out=args.resume, resume=args.resume, quiet=args.quiet)
    options.update(storage=saved.get("storage"), study_name=saved.get("study_name"))
    options["grid"], options["ranges"] = tuple(options["grid"]), tuple(options["ranges"])
    options.update({n: getattr(args, n) for n in ("trials", "batch") if getattr(args, n) is not None})
    return dataclasses.replace(args, **options)


def _study_args(args: Any) -> tuple[Any, int]:
    """The study's arguments (the saved ones on --resume), checked; returns (args, batch)."""
    if args.resume is not None:
        args = _resumed_study_args(args)
    if args.sampler is None:
        raise ConfigError("--trials/--storage need --sampler (tpe, cmaes, gp, random or grid)")
    batch = args.batch if args.batch is not None else DEFAULT_BATCH
    for name, value in (("trials", args.trials), ("batch", batch), ("seeds", args.seeds),
                        ("eval_episodes", args.eval_episodes), ("heartbeat", args.heartbeat)):  # fmt: skip
        if value is None:
            raise ConfigError(f"{_flag(name)} is required with --sampler: how many trials the study runs")
        if value < 1:
            raise ConfigError(f"{name}={value!r} is invalid: must be a positive integer")
    if args.random:
        raise ConfigError("--random draws a plain random sweep; with --sampler the study samples --trials settings")
    if (args.num_processes or 1) > 1 or args.distributed:
        raise ConfigError(
            "a study runs in one process per worker: start several workers on one --storage instead of "
            "--num-processes / --distributed"
        )
    check_seed("sample_seed", args.sample_seed)
    return args, batch


def _open_worker_study(args: Any, out: Path, space: Any, signature: dict[str, Any]) -> tuple[Any, str, str]:
    """Open (or create) the study this worker joins, after checking a shared one before `out` is made;
    returns (study, storage URL, study name). The sampler's seed mixes --sample-seed with the study's
    size and, for a shared storage, the process id: reproducible for one worker, distinct across workers."""
    import numpy as np

    from a2c_jax.population.study import make_sampler, open_storage, open_study
    from a2c_jax.runs.runner import check_output_dir

    url = args.storage or f"sqlite:///{(out / 'study.db').absolute()}"
    name = args.study_name or out.name
    placeholder = make_sampler("random", space, 0)
    storage = open_storage(url, args.heartbeat) if args.storage else None
    if storage is not None:  # a shared study: refuse a mismatch before anything is written
        open_study(storage, name, placeholder, signature)
    check_output_dir(out, "out")
    study = open_study(storage or open_storage(url, args.heartbeat), name, placeholder, signature)
    entropy = [args.sample_seed, len(study.trials), os.getpid() if args.storage else 0]
    study.sampler = make_sampler(args.sampler, space, int(np.random.SeedSequence(entropy).generate_state(1)[0]))
    return study, url, name


def study_command(args: Any) -> int:
    """`a2c-jax sweep --sampler S`: an Optuna study whose rounds train as vmapped populations."""
    import importlib.util
    import socket

    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("--sampler needs Optuna: pip install 'a2c-jax[tune]'")
    from a2c_jax.config import flat_settings
    from a2c_jax.population.space import SearchSpace, parse_grid, parse_ranges
    from a2c_jax.population.study import (
        check_space,
        make_sampler,
        optimize,
        population_evaluator,
        quiet_optuna,
        study_signature,
        write_outputs,
    )
    from a2c_jax.runs.records import count_bar, write_json_atomic
    from a2c_jax.runs.runner import check_output_dir
    from a2c_jax.runs.trackers import parse_trackers

    quiet_optuna()
    args, batch = _study_args(args)
    trackers = parse_trackers(args.log)
    config, hparams, _ = resolve_train_args(args)
    space = SearchSpace(parse_grid(args.grid), parse_ranges(args.ranges, int_config=True))
    make_sampler(args.sampler, space, 0)  # its errors before anything is written
    check_space(config, hparams, space, args.eval_episodes)
    points = math.prod(len(v) for v in space.grid.values())
    if args.sampler == "grid" and args.trials > points:
        raise ConfigError(f"trials={args.trials} is invalid with sampler='grid': the grid has {points} points")
    out = args.out or Path("sweeps") / f"{config.env_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.resume is None and out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"out={str(out)!r} already exists and is not empty: choose another directory")
    check_output_dir(out, "out", create=False)
    base = flat_settings(config, hparams)
    signature = study_signature(space, base, args.seeds, args.eval_episodes, args.heartbeat)
    study, url, name = _open_worker_study(args, out, space, signature)
    options = {k: getattr(args, k) for k in STUDY_OPTIONS} | {"batch": batch}
    write_json_atomic(out / "base.json", base)
    write_json_atomic(out / "search.json", {"options": options, "storage": args.storage, "study_name": name})
    print(
        f"a2c-jax: study {name!r} ({args.sampler}) on {config.env_id}: {args.trials} trials in rounds of {batch} "
        f"x {args.seeds} seeds -> {out}" + ("" if args.storage else f" (optuna-dashboard {url})")
    )
    evaluate = population_evaluator(
        config, hparams, list(range(args.seeds)), args.eval_episodes, args.max_population, args.devices
    )
    start = time.perf_counter()
    with count_bar(args.trials, "trials", not args.quiet) as advance:
        progress = lambda done, _total: advance(done)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        ran = optimize(study, space, args.trials, batch, evaluate, args.heartbeat, worker, progress)
    ranked, best = write_outputs(study, space, out, config, hparams, trackers)
    if ranked:
        _print_table(ranked, space.names, f"study {name!r}: final greedy return, IQM over {args.seeds} seeds")
    print(
        f"{ran} trials trained here in {time.perf_counter() - start:.1f}s; the study holds {len(ranked)} results"
        + (f"; best setting -> {out / 'best.json'}" if best is not None else "")
    )
    if best is None:
        return _error("no trial of the study completed without diverging: no best.json written", EXIT_FAULT)
    return 0


def pbt_command(args: Any) -> int:
    """`a2c-jax pbt`."""
    import jax
    import numpy as np

    from a2c_jax.core.stats import bootstrap_ci, iqm
    from a2c_jax.population.pbt import make_pbt
    from a2c_jax.population.sweep import stack_hparams
    from a2c_jax.runs.distributed import is_primary, population_layout
    from a2c_jax.runs.plots import plot_pbt_schedule
    from a2c_jax.runs.records import write_population
    from a2c_jax.runs.runner import check_output_dir
    from a2c_jax.runs.trackers import log_population, parse_trackers

    trackers = parse_trackers(args.log)
    if args.compile_cache:
        enable_compile_cache()
    config, settings, members, out, programs = _population_setup(args, "pbt")
    names = list(settings[0])
    if not names:
        raise ConfigError("pbt needs at least one --grid or --range name to search over")
    if any(n in CONFIG_NAMES for n in names):
        raise ConfigError(f"pbt searches HParams only ({', '.join(HPARAM_NAMES)}); got {', '.join(names)}")
    if not 0 < args.fraction <= 0.5:
        raise ConfigError(f"fraction={args.fraction!r} is invalid: must be in (0, 0.5]")
    interval = args.interval if args.interval is not None else max(1, config.num_updates // 10)
    if not 0 < interval <= config.num_updates:
        raise ConfigError(f"interval={interval!r} is invalid: must be in [1, {config.num_updates}] updates")
    check_output_dir(out, "out")
    print(f"a2c-jax: PBT on {config.env_id}: {len(members)} members, exploit every {interval} updates -> {out}")
    layout = population_layout(args.devices, config.num_envs, len(members))
    if layout is not None and len(members) % layout.pop_devices:
        raise ConfigError(
            f"the population of {len(members)} members does not divide over {layout.pop_devices} devices: "
            f"use a population that is a multiple of {layout.pop_devices}, or fewer --devices"
        )
    pbt = make_pbt(programs.agent(config), interval, names, args.fraction, args.eval_episodes, layout)
    program = jax.jit(pbt) if layout is None else jax.jit(pbt, out_shardings=layout.replicated)
    seeds = np.array([m.seed for m in members], np.int32)
    start = time.perf_counter()
    result = jax.block_until_ready(program(seeds, stack_hparams(members), jax.random.PRNGKey(args.sample_seed)))
    wall = time.perf_counter() - start
    if not is_primary():
        return 0
    final = np.asarray(result.final_return, np.float64)
    bad = np.asarray(result.diverged, bool)
    generations = np.asarray(result.fitness).shape[0]
    steps = np.minimum(np.arange(1, generations + 1) * interval, config.num_updates) * config.batch_size
    schedule = {n: np.asarray(getattr(result.schedule, n)) for n in names}
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, m in enumerate(members):
        row = {"member": i, "setting": m.setting, "seed": m.seed}
        row.update({f"initial_{n}": float(getattr(m.hparams, n)) for n in names})
        row.update({f"final_{n}": float(schedule[n][-1, i]) for n in names})
        row.update(
            {
                "final_return": final[i],
                "env_steps": config.num_updates * config.batch_size,
                "seconds": wall / len(members),
                "diverged": bool(bad[i]),
            }
        )
        rows.append(row)
    sched_rows = [
        {"generation": g, "env_steps": int(steps[g]), "member": i, **{n: float(schedule[n][g, i]) for n in names},
         "fitness": float(np.asarray(result.fitness)[g, i]), "copied_from": int(np.asarray(result.source)[g, i])}
        for g in range(generations) for i in range(len(members))
    ]  # fmt: skip
    arrays: dict[str, Any] = {f"schedule_{n}": v for n, v in schedule.items()}
    arrays.update(env_steps=steps, fitness=np.asarray(result.fitness), source=np.asarray(result.source))
    arrays.update(final_return=final, diverged=bad)
    best_cfg = None
    if not bad.all():
        best = int(np.argmax(np.where(bad, -np.inf, final)))
        best_cfg = flat_settings(config, members[best].hparams)
        best_cfg.update({n: float(schedule[n][-1, best]) for n in names})
    write_population(out, {"results.csv": rows, "schedule.csv": sched_rows}, arrays, best_cfg)
    plot_pbt_schedule(steps, schedule, np.asarray(result.fitness), out / "pbt.png", f"PBT on {config.env_id}")
    member_steps = np.broadcast_to(steps, (len(members), generations))
    series = {"fitness": np.asarray(result.fitness).T, **{n: v.T for n, v in schedule.items()}}
    log_population(trackers, out, "pbt", rows, member_steps, series)
    print(f"{len(members)} members in {wall:.1f}s (compile included) -> {out}")
    if bad.all():
        return _error("every PBT member diverged: no best.json written", EXIT_FAULT)
    if bad.any():
        print(
            f"a2c-jax: warning: {int(bad.sum())} of {len(members)} members diverged; never chosen as best",
            file=sys.stderr,
        )
    low, high = bootstrap_ci(final[~bad])
    print(
        f"population final greedy return: IQM {iqm(final[~bad]):.1f} [{low:.1f}, {high:.1f}] (members that did not "
        f"diverge), best member {best} {final[best]:.1f} with final "
        + ", ".join(f"{n}={schedule[n][-1, best]:.4g}" for n in names)
    )
    return 0


def parse_args(argv: list[str] | None) -> Any:
    """tyro's parse, with its boxed multi-line errors turned into the one-line form every other error has."""
    import contextlib
    import io

    train_cmd: Any = Annotated[TrainArgs, tyro.conf.subcommand("train", description=TrainArgs.__doc__)]
    eval_cmd: Any = Annotated[EvalArgs, tyro.conf.subcommand("eval", description=EvalArgs.__doc__)]
    sweep_cmd: Any = Annotated[SweepArgs, tyro.conf.subcommand("sweep", description=SweepArgs.__doc__)]
    pbt_cmd: Any = Annotated[PBTArgs, tyro.conf.subcommand("pbt", description=PBTArgs.__doc__)]
    rlhf_cmd: Any = Annotated[RLHFArgs, tyro.conf.subcommand("rlhf", description=RLHFArgs.__doc__)]
    rlhf_sweep_cmd: Any = Annotated[
        RLHFSweepArgs, tyro.conf.subcommand("rlhf-sweep", description=RLHFSweepArgs.__doc__)
    ]
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(
                train_cmd | eval_cmd | sweep_cmd | pbt_cmd | rlhf_cmd | rlhf_sweep_cmd,
                args=argv,
                prog="a2c-jax",
                description="Pure-functional A2C in JAX on gymnax environments, and token-level A2C for RLHF.",
            )
    except SystemExit as stop:
        if stop.code in (0, None):
            sys.stderr.write(captured.getvalue())
            raise
        raise ConfigError(_one_line_parse_error(captured.getvalue(), argv)) from None


def _one_line_parse_error(text: str, argv: list[str] | None) -> str:
    """The gist of a tyro error box on one line, plus where to find help."""
    raw = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(("╭", "╰"))]
    body = [line.strip("│|").strip() for line in raw]
    is_rule = [bool(line) and set(line) <= {"─", "-"} for line in body]
    if len(body) > 1 and is_rule[1] and not raw[0].startswith("│"):  # a plain-text box: title, rule, body
        body = body[2:]
    paragraph: list[str] = []
    for line in body:
        if not line or set(line) <= {"─"}:
            if paragraph:
                break
            continue
        paragraph.append(line)
    message = " ".join(paragraph) or "bad arguments"
    if message.startswith("Error parsing"):
        reasons = [line.split(">: ", 1)[1] for line in body if line.startswith("- <class") and "NoneType" not in line]
        if reasons:
            message = message.split(":", 1)[0] + ": " + "; ".join(reasons)
    message = re.sub(r"^Missing from [^:]*:", "missing required argument", message).replace("{None}|", "")
    message = message.replace("'None', ", "").replace(", 'None'", "")
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in ("train", "eval", "sweep", "pbt", "rlhf", "rlhf-sweep")), "")
    return f"{message} (see `a2c-jax {command + ' ' if command else ''}--help`)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `a2c-jax` command; returns the exit status.

    Exit status: 0 done (or already finished), 2 bad input (nothing written), 1 a fault (training
    diverged, disk full, out of memory; the last checkpoint stays intact), 130 / 143 interrupted by
    SIGINT / SIGTERM (resumable). Every error is one line on stderr.
    """
    try:
        args = parse_args(argv)
        if isinstance(args, _ClusterOptions):
            join_processes(args)
        if isinstance(args, EvalArgs):
            return eval_command(args)
        if isinstance(args, SweepArgs):
            return sweep_command(args)
        if isinstance(args, PBTArgs):
            return pbt_command(args)
        if isinstance(args, RLHFArgs):
            return rlhf_command(args)
        return train_command(args)
    except ConfigError as err:
        return _error(str(err), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _error("interrupted", EXIT_INTERRUPTED, prefix="a2c-jax: ")
    except Exception as err:
        return _fault(err)


def join_processes(args: _ClusterOptions) -> None:
    """Validate --devices and start `jax.distributed` when the flags ask for several processes."""
    from a2c_jax.runs.distributed import DistributedOptions, initialize, parse_devices

    if args.devices is not None:
        parse_devices(args.devices)
    options = DistributedOptions(
        args.coordinator_address, args.num_processes, args.process_id, args.distributed, args.distributed_timeout
    )
    initialize(options.validate())


def _error(text: str, status: int, prefix: str = "a2c-jax: error: ") -> int:
    print(prefix + " ".join(text.split()), file=sys.stderr)
    return status


def _fault(err: Exception) -> int:
    """One line for a failure that is not bad input; the traceback only with A2C_JAX_TRACEBACK=1."""
    from a2c_jax.runs.checkpoint import CheckpointWriteError, root_cause
    from a2c_jax.runs.distributed import DistributedError
    from a2c_jax.runs.runner import TrainingDiverged, TrainingInterrupted

    if os.environ.get("A2C_JAX_TRACEBACK"):
        raise err
    if isinstance(err, TrainingInterrupted):
        return _error(str(err), 128 + int(err.signum), prefix="a2c-jax: ")
    if isinstance(err, TrainingDiverged):
        return _error(str(err), EXIT_DIVERGED, prefix="a2c-jax: training diverged: ")
    if isinstance(err, CheckpointWriteError | DistributedError):
        return _error(str(err), EXIT_FAULT)
    if isinstance(err, OSError):
        where = f": {err.filename!r}" if err.filename else ""
        return _error(f"{err.strerror or err}{where}", EXIT_FAULT)
    if type(err).__name__ in ("XlaRuntimeError", "JaxRuntimeError") or isinstance(err, MemoryError):
        return _error(f"the computation failed: {root_cause(err)}", EXIT_FAULT)
    return _error(
        f"internal error: {root_cause(err)} (rerun with A2C_JAX_TRACEBACK=1 for the traceback and please report it)",
        EXIT_FAULT,
    )


def one_device_per_core(argv: list[str], environ: MutableMapping[str, str] = os.environ) -> None:
    """Before JAX starts, for `sweep`, `pbt` and `train --devices` in one process: ask XLA for one CPU
    device per core (so populations, and a `train` that asks for devices, can use every core).

    Appends `--xla_force_host_platform_device_count=CORES` to XLA_FLAGS unless it already sets a
    count, the command is another, a multi-process flag is given, or there is one core. Programs
    that ask for one device run on the first as before; accelerators are unaffected.
    """
    names = {a.split("=")[0] for a in argv}
    multi = {"--coordinator-address", "--num-processes", "--process-id", "--distributed"}
    wanted = bool(argv) and (argv[0] in ("sweep", "pbt") or (argv[0] == "train" and "--devices" in names))
    if wanted and not names & multi:
        cpu_device_per_core(environ)


def cpu_device_per_core(environ: MutableMapping[str, str] = os.environ) -> None:
    """Append `--xla_force_host_platform_device_count=CORES` to XLA_FLAGS (before JAX starts) unless
    it already sets a count or there is one core."""
    flags = environ.get("XLA_FLAGS", "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores > 1 and "host_platform_device_count" not in flags:
        environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cores}".strip()


def run() -> None:
    """Console-script wrapper: `main()`, then a quick exit.

    Everything a command writes is complete and closed when `main` returns (files are written
    atomically, checkpoints synchronously), so after the atexit handlers have run (JAX's among them)
    the process leaves with `os._exit`: the interpreter's own teardown — destroying XLA's client,
    compiled programs and thread pools one object at a time — took about a second of every command
    on a 2-core CPU and did nothing a user needs.
    """
    import atexit

    one_device_per_core(sys.argv[1:])
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
