"""`a2c-jax sweep`: grid and random sweeps as populations, and Optuna studies (`--sampler`)."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from a2c_jax.cli.args import (
    EXIT_FAULT,
    _error,
    _PopulationArgs,
)
from a2c_jax.cli.settings import (
    _flag,
    enable_compile_cache,
    resolve_train_args,
)
from a2c_jax.config import (
    CONFIG_NAMES,
    HPARAM_NAMES,
    ConfigError,
    check_seed,
    flat_settings,
)


def _population_setup(args: _PopulationArgs, kind: str) -> tuple[Any, list[Any], list[Any], Path, Any]:
    """Validate everything a sweep or PBT run needs before anything compiles or is written; returns
    (config, settings, members, out, the sweep.Programs holding each static config's Agent)."""
    from a2c_jax.population.space import check_population_size, expand_settings, parse_grid, parse_ranges
    from a2c_jax.population.sweep import Programs, make_members
    from a2c_jax.runs.lock import check_free, entries
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
    check_free(out, "out")
    if getattr(args, "resume", None) is None and entries(out):
        raise ConfigError(f"out={str(out)!r} already exists and is not empty: choose another directory")
    check_output_dir(out, "out", create=False)
    return config, settings, members, out, programs


def _print_table(rows: list[dict[str, Any]], names: list[str], title: str, objective: str, limit: int = 20) -> None:
    """The ranking as a table: each row's values, its score under `objective` with the score's 95%
    interval, then its IQM (when the objective is another statistic), mean, seeds and diverged seeds."""
    from rich.console import Console
    from rich.table import Table

    extra = [] if objective == "iqm" else ["IQM"]
    table = Table(title=title)
    for col in ["rank", *names, f"{objective} return", "95% CI", *extra, "mean", "seeds", "diverged"]:
        table.add_column(col, justify="right")
    for rank, r in enumerate(rows[:limit], start=1):
        values = [f"{r[n]:.4g}" if isinstance(r[n], float) else str(r[n]) for n in names]
        ci = f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}]"
        bad = f"[red]{r['diverged']}[/red]" if r["diverged"] else "0"
        iqm = [f"{r['iqm']:.1f}"] if extra else []
        table.add_row(str(rank), *values, f"{r['score']:.1f}", ci, *iqm, f"{r['mean']:.1f}", str(r["seeds"]), bad)
    Console().print(table)


SWEEP_OPTIONS = (
    "grid",
    "ranges",
    "random",
    "seeds",
    "sample_seed",
    "eval_episodes",
    "log",
    "max_population",
    "devices",
    "objective",
)
"""The options sweep.json keeps for `sweep --resume` of a grid or random sweep (the base settings go to base.json)."""


def _resumed_sweep_args(args: Any) -> Any:
    """The saved arguments of the interrupted grid/random sweep in `args.resume` (a flag that would change
    it is refused, not ignored)."""
    from a2c_jax.runs.records import read_json

    given = [n for n in ("preset", "config", "out", "trials", "batch", "storage", "study_name", "sampler")
             if getattr(args, n) is not None]  # fmt: skip
    given += [n for n in CONFIG_NAMES + HPARAM_NAMES if getattr(args, n) is not None]
    defaults = type(args)()
    given += [n for n in SWEEP_OPTIONS if getattr(args, n) != getattr(defaults, n)]
    if given:
        raise ConfigError(
            f"--resume continues a sweep with its saved settings: {', '.join(map(_flag, given))} cannot be given "
            "with it (allowed: --quiet)"
        )
    saved = read_json(args.resume / "sweep.json", "resume")
    if not isinstance(saved, dict) or not isinstance(saved.get("options"), dict):
        raise ConfigError(f"resume: {str(args.resume / 'sweep.json')!r} is not written by `a2c-jax sweep`")
    options = _check_saved_options(dict(saved["options"]), defaults, args.resume / "sweep.json")
    options["grid"], options["ranges"] = tuple(options["grid"]), tuple(options["ranges"])
    return dataclasses.replace(args, **options, config=args.resume / "base.json", out=args.resume)


def sweep_command(args: Any) -> int:
    """`a2c-jax sweep`."""
    if args.resume is not None and (args.resume / "sweep.json").is_file():
        args = _resumed_sweep_args(args)
        if (args.resume / "results.npz").is_file() and not (args.resume / "progress").exists():
            print(f"{str(args.resume)!r} has already finished; nothing to do")
            return 0
    elif args.sampler is not None or args.resume is not None:
        return study_command(args)
    for name in ("trials", "batch", "storage", "study_name"):
        if getattr(args, name) is not None:
            raise ConfigError(f"{_flag(name)} needs --sampler (an Optuna study); a plain sweep trains every setting")

    from a2c_jax.population.sweep import SweepProgress, best_config, member_rows, rank_settings, run_sweep
    from a2c_jax.runs.distributed import is_primary
    from a2c_jax.runs.lock import locked
    from a2c_jax.runs.loop import graceful_stop
    from a2c_jax.runs.plots import plot_sweep
    from a2c_jax.runs.records import count_bar, write_json_atomic, write_population
    from a2c_jax.runs.runner import check_output_dir, warn
    from a2c_jax.runs.trackers import log_population, parse_trackers

    if args.max_population is not None and args.max_population <= 0:
        raise ConfigError(f"max_population={args.max_population!r} is invalid: must be a positive integer")
    from a2c_jax.population.results import check_objective

    check_objective(args.objective)
    trackers = parse_trackers(args.log)
    if args.compile_cache:
        enable_compile_cache()
    config, settings, members, out, programs = _population_setup(args, "sweep")
    names = list(settings[0])
    check_output_dir(out, "out")
    with locked(out, "out", is_primary()), graceful_stop(warn) as stop_requested:  # one writer per --out
        if args.resume is None and is_primary():
            base = flat_settings(*resolve_train_args(args)[:2])
            write_json_atomic(out / "base.json", base)
            write_json_atomic(out / "sweep.json", {"options": {k: getattr(args, k) for k in SWEEP_OPTIONS}})
        print(f"a2c-jax: sweeping {config.env_id}: {len(settings)} settings x {args.seeds} seeds -> {out}")
        progress = SweepProgress(out / "progress", stop_requested, f"a2c-jax sweep --resume {out}")
        with count_bar(len(members), "members", not args.quiet and is_primary()) as advance:
            result = run_sweep(
                members, settings, args.eval_episodes, args.max_population, advance, args.devices, programs=programs,
                progress=progress,
            )  # fmt: skip
        if not is_primary():
            return 0
        ranked = rank_settings(result, args.objective)
        out.mkdir(parents=True, exist_ok=True)
        rows = member_rows(result)
        best = best_config(result, ranked)
        arrays = {"env_steps": result.curve_steps, "returns": result.curves, "final_return": result.final_return,
                  "setting": [m.setting for m in members], "seed": [m.seed for m in members]}  # fmt: skip
        write_population(out, {"results.csv": rows, "ranking.csv": ranked}, arrays, best)
        shutil.rmtree(progress.directory, ignore_errors=True)  # results.npz holds every chunk's outputs now
        log_population(trackers, out, "sweep", rows, result.curve_steps, {"episode_return": result.curves})
        plot_sweep(ranked, names, out / "sweep.png", f"A2C sweep on {config.env_id}")
        title = f"{config.env_id}: final greedy return, {args.objective} over {args.seeds} seeds"
        _print_table(ranked, names, title, args.objective)
        print(
            f"{len(members)} members in {result.wall_seconds:.1f}s ({result.groups} compiled program(s), compile "
            f"{result.compile_seconds:.1f}s{f', split over {result.devices} devices' if result.devices > 1 else ''})"
            + (f"; best setting -> {out / 'best.json'}" if best is not None else "")
        )
        if result.diverged.any():
            print(
                f"a2c-jax: warning: {int(result.diverged.sum())} of {len(members)} members diverged (non-finite loss "
                "or parameters); their settings are ranked last and never chosen as best",
                file=sys.stderr,
            )
        if best is None:
            return _error("every setting diverged: no best.json written", EXIT_FAULT)
        return 0


STUDY_MAY_CHANGE = ("trials", "batch", "quiet")
STUDY_OPTIONS = ("grid", "ranges", "seeds", "sample_seed", "eval_episodes", "log", "max_population", "devices",
                 "sampler", "trials", "batch", "heartbeat", "objective")  # fmt: skip
"""The options search.json keeps for --resume (the base settings go to base.json)."""
DEFAULT_BATCH = 8


def _check_saved_options(options: dict[str, Any], defaults: Any, path: Path) -> dict[str, Any]:
    """The options a sweep saved (search.json or sweep.json), each checked against the type of its flag:
    a damaged field is one line naming the file and the field (exit 2), never an internal error later."""
    for name, value in options.items():
        if not hasattr(defaults, name):
            raise ConfigError(f"resume: {str(path)!r} is damaged: it holds an unknown field {name!r}")
        default = getattr(defaults, name, None)
        if name in ("grid", "ranges"):
            ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        elif name in ("max_population", "trials", "batch"):
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
        elif name in ("devices", "sampler"):
            ok = value is None or isinstance(value, str)
        elif default is None or isinstance(default, bool):
            ok = True
        else:
            ok = isinstance(value, type(default)) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(f"resume: {str(path)!r} is damaged: {name}={value!r} is not a valid value of --{name}")
    return options


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
    options = _check_saved_options(dict(saved["options"]), type(args)(), path)
    # options with a default of their own: one given with another value than the study's is refused, not ignored
    defaults = type(args)()
    kept = ("seeds", "sample_seed", "eval_episodes", "log", "heartbeat", "max_population", "devices", "objective")
    given = [n for n in kept if getattr(args, n) != getattr(defaults, n)]
    differ = [n for n in given if n in options and getattr(args, n) != options[n]]
    if differ:
        raise ConfigError(
            f"--resume continues a study with its saved settings: {', '.join(map(_flag, differ))} cannot be given "
            f"with another value (the study's: {', '.join(f'{n}={options[n]!r}' for n in differ)}; allowed: "
            f"{', '.join(map(_flag, STUDY_MAY_CHANGE))})"
        )
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
    from a2c_jax.population.results import check_objective

    check_objective(args.objective)
    return args, batch


def _open_worker_study(args: Any, out: Path, space: Any, signature: dict[str, Any]) -> tuple[Any, str, str]:
    """Open (or create) the study this worker joins, after checking a shared one before `out` is made;
    returns (study, storage URL, study name). The sampler's seed mixes --sample-seed with the study's
    size and, for a shared storage, the process id: reproducible for one worker, distinct across workers."""
    import numpy as np

    from a2c_jax.population.study import make_sampler, open_storage, open_study, study_names
    from a2c_jax.runs.runner import check_output_dir

    url = args.storage or f"sqlite:///{(out / 'study.db').absolute()}"
    name = args.study_name or out.name
    placeholder = make_sampler("random", space, 0)
    if args.resume is not None and not args.storage and not (out / "study.db").is_file():
        raise ConfigError(
            f"resume={str(out)!r}: study not found ({str(out / 'study.db')!r} is missing): nothing to resume"
        )
    storage = open_storage(url, args.heartbeat) if args.storage else None
    if args.resume is not None and storage is not None and name not in study_names(storage):
        raise ConfigError(f"resume={str(out)!r}: study {name!r} not found in storage={url!r}: nothing to resume")
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

    from a2c_jax.runs.loop import signals_raise

    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("--sampler needs Optuna: pip install 'a2c-jax[tune]'")
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
    signature = study_signature(space, base, args.seeds, args.eval_episodes, args.heartbeat, args.objective)
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
    # requeue on SIGINT/SIGTERM
    with count_bar(args.trials, "trials", not args.quiet) as advance, signals_raise() as interrupted:
        progress = lambda done, _total: advance(done)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        ran = optimize(study, space, args.trials, batch, evaluate, args.heartbeat, worker, progress, args.objective,
                       interrupted)  # fmt: skip
        interrupted()  # a signal whose raise was lost between rounds
    ranked, best = write_outputs(study, space, out, config, hparams, trackers)
    if ranked:
        title = f"study {name!r}: final greedy return, {args.objective} over {args.seeds} seeds"
        _print_table(ranked, space.names, title, args.objective)
    print(
        f"{ran} trials trained here in {time.perf_counter() - start:.1f}s; the study holds {len(ranked)} results"
        + (f"; best setting -> {out / 'best.json'}" if best is not None else "")
    )
    if best is None:
        return _error("no trial of the study completed without diverging: no best.json written", EXIT_FAULT)
    return 0
