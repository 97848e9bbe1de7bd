"""`a2c-jax pbt`: population-based training in one compiled program."""

from __future__ import annotations

import sys
import time
from typing import Any

from a2c_jax.cli.args import (
    EXIT_FAULT,
    _error,
)
from a2c_jax.cli.settings import (
    enable_compile_cache,
)
from a2c_jax.cli.sweep import (
    _population_setup,
)
from a2c_jax.config import (
    ConfigError,
)


def pbt_command(args: Any) -> int:
    """`a2c-jax pbt`."""
    import jax
    import numpy as np

    from a2c_jax.core.stats import bootstrap_ci, iqm
    from a2c_jax.population.pbt import check_pbt, make_pbt, pbt_tables
    from a2c_jax.population.sweep import stack_hparams
    from a2c_jax.runs.distributed import is_primary, population_layout
    from a2c_jax.runs.lock import locked
    from a2c_jax.runs.plots import plot_pbt_schedule
    from a2c_jax.runs.records import write_population
    from a2c_jax.runs.runner import check_output_dir
    from a2c_jax.runs.trackers import log_population, parse_trackers

    trackers = parse_trackers(args.log)
    if args.compile_cache:
        enable_compile_cache()
    config, settings, members, out, programs = _population_setup(args, "pbt")
    names = list(settings[0])
    interval = check_pbt(names, args.fraction, args.interval, config.num_updates)
    check_output_dir(out, "out")
    with locked(out, "out", is_primary()):  # one writer per --out
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
        tables = pbt_tables(result, members, names, config, interval, wall)
        arrays, best = tables.arrays, tables.best
        out.mkdir(parents=True, exist_ok=True)
        write_population(
            out, {"results.csv": tables.rows, "schedule.csv": tables.schedule_rows}, arrays, tables.best_settings
        )
        schedule = {n: arrays[f"schedule_{n}"] for n in names}
        steps, fitness, final, bad = arrays["env_steps"], arrays["fitness"], arrays["final_return"], arrays["diverged"]
        plot_pbt_schedule(steps, schedule, fitness, out / "pbt.png", f"PBT on {config.env_id}")
        series = {"fitness": fitness.T, **{n: v.T for n, v in schedule.items()}}
        log_population(trackers, out, "pbt", tables.rows, np.broadcast_to(steps, (len(members), len(steps))), series)
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
