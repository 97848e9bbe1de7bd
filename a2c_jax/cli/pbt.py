"""`a2c-jax pbt`: population-based training, a generation at a time through the host loop (a checkpoint
per generation, so a stopped run continues with `a2c-jax pbt --resume OUT`)."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from a2c_jax.cli.args import EXIT_FAULT, _error
from a2c_jax.cli.settings import _flag, enable_compile_cache, resolve_train_args
from a2c_jax.cli.sweep import _check_saved_options, _population_setup
from a2c_jax.config import CONFIG_NAMES, HPARAM_NAMES, ConfigError, flat_settings

PBT_OPTIONS = ("grid", "ranges", "random", "seeds", "sample_seed", "eval_episodes", "log", "devices", "interval",
               "fraction")  # fmt: skip
"""The options pbt.json keeps for `pbt --resume` (the base settings go to base.json)."""


def _resumed_pbt_args(args: Any) -> Any:
    """The saved arguments of the stopped PBT run in `args.resume` (a flag that would change it is refused)."""
    from a2c_jax.runs.records import read_json

    path = args.resume / "pbt.json"
    if not path.is_file():
        raise ConfigError(f"resume={str(args.resume)!r} holds no pbt.json: not an `a2c-jax pbt` directory")
    defaults = type(args)()
    given = [n for n in ("preset", "config", "out") if getattr(args, n) is not None]
    given += [n for n in CONFIG_NAMES + HPARAM_NAMES if getattr(args, n) is not None]
    given += [n for n in PBT_OPTIONS if getattr(args, n) != getattr(defaults, n)]
    if given:
        raise ConfigError(
            f"--resume continues a PBT run with its saved settings: {', '.join(map(_flag, given))} cannot be "
            "given with it (allowed: --quiet)"
        )
    saved = read_json(path, "resume")
    if not isinstance(saved, dict) or not isinstance(saved.get("options"), dict):
        raise ConfigError(f"resume: {str(path)!r} is not written by `a2c-jax pbt`")
    options = _check_saved_options(dict(saved["options"]), defaults, path)
    options["grid"], options["ranges"] = tuple(options["grid"]), tuple(options["ranges"])
    return dataclasses.replace(args, **options, config=args.resume / "base.json", out=args.resume)


def run_generations(program: Any, seeds: Any, hps: Any, key: Any, out: Path, resume: bool, stop: Any, quiet: bool):
    """Every generation of `program` (a population.pbt.PBTProgram) through the host loop, checkpointed in
    OUT/checkpoints after each (and on SIGINT/SIGTERM); a resumed run starts after its last checkpoint.
    Returns the population.pbt.PBTResult."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from a2c_jax.population.pbt import PBTResult
    from a2c_jax.runs.checkpoint import CheckpointWriter, latest_step, restore_checkpoint
    from a2c_jax.runs.loop import Job, run_loop
    from a2c_jax.runs.records import count_bar
    from a2c_jax.runs.runner import warn

    start, generation, finish = jax.jit(program.start), jax.jit(program.generation), jax.jit(program.finish)
    carry = start(seeds, hps, key)
    shapes = jax.eval_shape(generation, carry, jnp.int32(0))[1]
    # the per-generation history and the counter live on the host (NumPy): only the carry is on the devices
    history = jax.tree.map(lambda x: np.zeros((program.generations, *x.shape), x.dtype), shapes)
    state = {"carry": carry, "history": history, "generation": np.int32(0)}
    ckpt_dir = out / "checkpoints"
    if resume and latest_step(ckpt_dir) is not None:
        state, _, _ = restore_checkpoint(ckpt_dir, state, warn=warn)
        state = {**state, "history": jax.tree.map(np.array, state["history"]),
                 "generation": np.int32(state["generation"])}  # fmt: skip
    writer = CheckpointWriter(ckpt_dir)

    def run_chunk(s: dict[str, Any], n: int) -> tuple[dict[str, Any], None]:
        g = int(s["generation"])
        new_carry, outs = generation(s["carry"], jnp.int32(g))
        hist = jax.tree.map(np.copy, s["history"])
        for h, o in zip(jax.tree.leaves(hist), jax.tree.leaves(outs), strict=True):
            h[g] = np.asarray(o)
        return {"carry": jax.block_until_ready(new_carry), "history": hist, "generation": np.int32(g + 1)}, None

    def save(s: dict[str, Any]) -> None:
        writer.save(int(s["generation"]), s, {"update": int(s["generation"])})

    with count_bar(program.generations, "generations", not quiet) as advance:
        done = int(state["generation"])
        advance(done)
        job = Job(
            run_chunk,
            program.generations,
            1,
            lambda s, m, b, n: advance(b + n),
            save,
            f"a2c-jax pbt --resume {out}",
            what="generation",
            checkpoint_seconds=0.0,
            stop_requested=stop,
        )  # fmt: skip  (a checkpoint after every generation)
        try:
            state = run_loop(job, state, done)
        finally:
            writer.close()
    fit, schedule, source, bad = state["history"]
    return PBTResult(finish(state["carry"], seeds), fit, schedule, source, bad[-1])


def pbt_command(args: Any) -> int:
    """`a2c-jax pbt` (and `a2c-jax pbt --resume OUT`)."""
    import jax
    import numpy as np

    from a2c_jax.core.stats import bootstrap_ci, iqm
    from a2c_jax.population.pbt import check_pbt, pbt_program, pbt_tables
    from a2c_jax.population.sweep import stack_hparams
    from a2c_jax.runs.distributed import is_primary, population_layout
    from a2c_jax.runs.lock import locked
    from a2c_jax.runs.loop import graceful_stop
    from a2c_jax.runs.plots import plot_pbt_schedule
    from a2c_jax.runs.records import write_json_atomic, write_population
    from a2c_jax.runs.runner import check_output_dir, warn
    from a2c_jax.runs.trackers import log_population, parse_trackers

    resume = args.resume is not None
    if resume:
        args = _resumed_pbt_args(args)
    trackers = parse_trackers(args.log)
    if args.compile_cache:
        enable_compile_cache()
    config, settings, members, out, programs = _population_setup(args, "pbt")
    names = list(settings[0])
    interval = check_pbt(names, args.fraction, args.interval, config.num_updates)
    check_output_dir(out, "out")
    layout = population_layout(args.devices, config.num_envs, len(members))
    if layout is not None and len(members) % layout.pop_devices:
        raise ConfigError(
            f"the population of {len(members)} members does not divide over {layout.pop_devices} devices: "
            f"use a population that is a multiple of {layout.pop_devices}, or fewer --devices"
        )
    with locked(out, "out", is_primary()), graceful_stop(warn) as stop:  # one writer per --out
        if not resume and is_primary():
            write_json_atomic(out / "base.json", flat_settings(*resolve_train_args(args)[:2]))
            write_json_atomic(out / "pbt.json", {"options": {k: getattr(args, k) for k in PBT_OPTIONS}})
        print(f"a2c-jax: PBT on {config.env_id}: {len(members)} members, exploit every {interval} updates -> {out}")
        program = pbt_program(programs.agent(config), interval, names, args.fraction, args.eval_episodes, layout)
        seeds = np.array([m.seed for m in members], np.int32)
        start = time.perf_counter()
        key = jax.random.PRNGKey(args.sample_seed)
        result = run_generations(program, seeds, stack_hparams(members), key, out, resume, stop, args.quiet)
        result = jax.tree.map(np.asarray, result)  # every process reads the population's results
        wall = time.perf_counter() - start
        if not is_primary():
            return 0
        tables = pbt_tables(result, members, names, config, interval, wall)
        arrays, best = tables.arrays, tables.best
        csvs = {"results.csv": tables.rows, "schedule.csv": tables.schedule_rows}
        write_population(out, csvs, arrays, tables.best_settings)
        schedule = {n: arrays[f"schedule_{n}"] for n in names}
        steps, fitness, final, bad = arrays["env_steps"], arrays["fitness"], arrays["final_return"], arrays["diverged"]
        plot_pbt_schedule(steps, schedule, fitness, out / "pbt.png", f"PBT on {config.env_id}")
        series = {"fitness": fitness.T, **{n: v.T for n, v in schedule.items()}}
        log_population(trackers, out, "pbt", tables.rows, np.broadcast_to(steps, (len(members), len(steps))), series)
    print(f"{len(members)} members in {wall:.1f}s (compile included) -> {out}")
    if bad.all():
        return _error("every PBT member diverged: no best.json written", EXIT_FAULT)
    if bad.any():
        diverged = f"{int(bad.sum())} of {len(members)} members diverged"
        print(f"a2c-jax: warning: {diverged}; never chosen as best", file=sys.stderr)
    low, high = bootstrap_ci(final[~bad])
    print(
        f"population final greedy return: IQM {iqm(final[~bad]):.1f} [{low:.1f}, {high:.1f}] (members that did not "
        f"diverge), best member {best} {final[best]:.1f} with final "
        + ", ".join(f"{n}={schedule[n][-1, best]:.4g}" for n in names)
    )
    return 0
