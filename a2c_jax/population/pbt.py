"""Population-based training (Jaderberg et al. 2017) inside one compiled program.

Every `interval` updates each member's fitness is the mean return of the episodes it finished in
that interval. The worst `fraction` of the population copies the parameters, optimizer state and
normalisation statistics of a randomly chosen member of the best `fraction` (exploit), then
multiplies each searched hyperparameter by 0.8 or 1.25 at random, clipped to its valid range
(explore). Everything is `jnp`: the generations are a `lax.scan`, with no host round-trip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.config import (
    CONFIG_NAMES,
    HPARAM_NAMES,
    HPARAM_RANGES,
    A2CConfig,
    ConfigError,
    HParams,
    check_int,
    check_number,
    flat_settings,
)
from a2c_jax.core.evaluate import evaluate_final
from a2c_jax.core.stats import weighted_mean
from a2c_jax.core.train import Agent, TrainState, as_agent, init_state, make_run_chunk
from a2c_jax.population.results import best, rank, seed_statistics
from a2c_jax.population.sweep import Member, constrain_population, diverged
from a2c_jax.runs.distributed import Layout

PERTURB_FACTORS = (0.8, 1.25)


class PBTResult(NamedTuple):
    """Outputs of a PBT run; P members, G generations."""

    final_return: jax.Array  # [P] greedy evaluation mean
    fitness: jax.Array  # [G, P] mean episode return per generation
    schedule: HParams  # leaves [G, P]: the hyperparameters each member trained with in generation g
    source: jax.Array  # [G, P] int: whom each member copied after generation g (itself if kept)
    diverged: jax.Array  # [P] bool: non-finite final parameters, or a non-finite loss in the last generation


def fitness_of(episode_return: jax.Array, episodes: jax.Array) -> jax.Array:
    """Weighted mean return over an interval's updates ([P, K] -> [P]); -inf if none ended."""
    return weighted_mean(episode_return, episodes, axis=-1, empty=-jnp.inf)


def select_sources(key: jax.Array, fitness: jax.Array, fraction: float) -> jax.Array:
    """[P] index each member continues from: the bottom `fraction` draw a random top-`fraction` member."""
    p = fitness.shape[0]
    n = max(1, int(p * fraction))
    order = jnp.argsort(fitness)  # ascending: worst first
    bottom, top = order[:n], order[p - n :]
    donors = top[jax.random.randint(key, (n,), 0, n)]
    return jnp.arange(p).at[bottom].set(donors)


def perturb(key: jax.Array, hparams: HParams, names: Sequence[str], replaced: jax.Array) -> HParams:
    """Multiply each searched leaf of the replaced members by 0.8 or 1.25, clipped to its range."""
    updates = {}
    for i, name in enumerate(names):
        value = getattr(hparams, name)
        factor = jnp.asarray(PERTURB_FACTORS)[jax.random.randint(jax.random.fold_in(key, i), value.shape, 0, 2)]
        lo, lo_open, hi, hi_open = HPARAM_RANGES[name]
        lo_c = lo + 1e-8 if lo_open else lo
        hi_c = min(hi - 1e-6 if hi_open else hi, 1e30)
        updates[name] = jnp.where(replaced, jnp.clip(value * factor, lo_c, hi_c), value)
    return hparams._replace(**updates)


def exploit(states: TrainState, source: jax.Array) -> TrainState:
    """Copy params, optimizer state and normalisation statistics from `source`; envs stay each member's."""
    take = lambda tree: jax.tree.map(lambda x: x[source], tree)
    env_state = states.env_state.map_groups(lambda own: own, take)  # shared statistics travel with the weights
    return dataclasses.replace(
        states, params=take(states.params), opt_state=take(states.opt_state), env_state=env_state
    )


class PBTProgram(NamedTuple):
    """The pieces of a PBT run, pure functions to jit:

    - start(seeds [P], hparams leaves [P], key) -> carry (states, hparams, key): members start like
      `a2c-jax train --seed s` (key PRNGKey(seed));
    - generation(carry, g) -> (carry, (fitness [P], hparams trained with [P], source [P], diverged [P])):
      `interval` updates of every member, then exploit (copy a fitter member's weights) and explore
      (perturb the copied hyperparameters); the last generation copies nothing;
    - finish(carry, seeds [P]) -> greedy final return [P], as `a2c-jax train` evaluates.

    `make_pbt` scans them into one program; `a2c-jax pbt` runs them a generation at a time through the
    host loop, so a stopped run continues from its last generation.
    """

    start: Callable[[jax.Array, HParams, jax.Array], tuple]
    generation: Callable[[tuple, jax.Array], tuple]
    finish: Callable[[tuple, jax.Array], jax.Array]
    generations: int


def pbt_program(
    agent: Agent | A2CConfig,
    interval: int,
    names: Sequence[str],
    fraction: float = 0.25,
    eval_episodes: int = 32,
    layout: Layout | None = None,
) -> PBTProgram:
    """The pieces of PBT for `agent` (see PBTProgram). With a `layout` the members' states stay sharded
    over its "pop" (and "env") devices; the exploit step's gather crosses devices where it must."""
    agent = as_agent(agent)
    run_chunk = make_run_chunk(agent, interval)
    total = agent.config.num_updates
    generations = -(-total // interval)

    def start(seeds: jax.Array, hparams: HParams, key: jax.Array) -> tuple:
        hparams = hparams.as_arrays()
        keys = jax.vmap(jax.random.PRNGKey)(seeds)
        states = constrain_population(jax.vmap(lambda k, h: init_state(agent, h, k))(keys, hparams), layout)
        return states, hparams, key

    def generation(carry: tuple, g: jax.Array) -> tuple:
        states, hps, key = carry
        members = jnp.arange(jax.tree.leaves(hps)[0].shape[0])
        n = jnp.minimum(interval, total - g * interval)
        states, metrics = jax.vmap(run_chunk, in_axes=(0, 0, None))(states, hps, n)
        # a member whose training diverged is the least fit, whatever its episodes returned
        bad = jax.vmap(diverged)(states, metrics)
        fit = jnp.where(bad, -jnp.inf, fitness_of(metrics.episode_return, metrics.episodes))
        key, sel_key, pert_key = jax.random.split(key, 3)
        source = jnp.where(g == generations - 1, members, select_sources(sel_key, fit, fraction))
        replaced = source != members
        new_states = constrain_population(exploit(states, source), layout)
        new_hps = perturb(pert_key, jax.tree.map(lambda x: x[source], hps), names, replaced)
        return (new_states, new_hps, key), (fit, hps, source, bad)

    def finish(carry: tuple, seeds: jax.Array) -> jax.Array:
        keys = jax.vmap(jax.random.PRNGKey)(seeds)
        final = jax.vmap(lambda s, k: evaluate_final(agent, s, k, eval_episodes))(carry[0], keys)
        return final.returns.mean(axis=-1)

    return PBTProgram(start, generation, finish, generations)


def make_pbt(
    agent: Agent | A2CConfig,
    interval: int,
    names: Sequence[str],
    fraction: float = 0.25,
    eval_episodes: int = 32,
    layout: Layout | None = None,
) -> Callable[[jax.Array, HParams, jax.Array], PBTResult]:
    """pbt(seeds [P] int, hparams leaves [P], key) -> PBTResult, one compiled program when jitted: the
    pieces of `pbt_program` with the generations scanned. `key` drives selection and perturbation."""
    program = pbt_program(agent, interval, names, fraction, eval_episodes, layout)

    def pbt(seeds: jax.Array, hparams: HParams, key: jax.Array) -> PBTResult:
        carry = program.start(seeds, hparams, key)
        carry, (fit, schedule, source, bad) = jax.lax.scan(  # type: ignore[var-annotated]
            program.generation, carry, jnp.arange(program.generations)
        )
        return PBTResult(program.finish(carry, seeds), fit, schedule, source, bad[-1])

    return pbt


def check_pbt(names: Sequence[str], fraction: float, interval: int | None, num_updates: int) -> int:
    """ConfigError (naming the field) for settings PBT cannot run; returns the exploit interval in
    updates (default: a tenth of the run)."""
    if not names:
        raise ConfigError("pbt needs at least one --grid or --range name to search over")
    if any(n in CONFIG_NAMES for n in names):
        raise ConfigError(f"pbt searches HParams only ({', '.join(HPARAM_NAMES)}); got {', '.join(names)}")
    check_number("fraction", fraction, 0.0, 0.5, low_open=True)
    return check_int("interval", interval if interval is not None else max(1, num_updates // 10), 1, num_updates)


class PBTTables(NamedTuple):
    """What a PBT run writes: one row per member (results.csv), one per generation and member
    (schedule.csv), the arrays (results.npz), the best clean member's settings (best.json; None when
    every member diverged) and that member's index (-1 then)."""

    rows: list[dict[str, Any]]
    schedule_rows: list[dict[str, Any]]
    arrays: dict[str, Any]
    best_settings: dict[str, Any] | None
    best: int


def pbt_tables(
    result: PBTResult, members: Sequence[Member], names: Sequence[str], config: A2CConfig, interval: int, wall: float
) -> PBTTables:
    """The tables of a finished PBT run (host side, NumPy)."""
    final = np.asarray(result.final_return, np.float64)
    bad = np.asarray(result.diverged, bool)
    fitness, source = np.asarray(result.fitness), np.asarray(result.source)
    generations = fitness.shape[0]
    steps = np.minimum(np.arange(1, generations + 1) * interval, config.num_updates) * config.batch_size
    schedule = {n: np.asarray(getattr(result.schedule, n)) for n in names}
    rows = []
    for i, m in enumerate(members):
        row: dict[str, Any] = {"member": i, "setting": m.setting, "seed": m.seed}
        row.update({f"initial_{n}": float(getattr(m.hparams, n)) for n in names})
        row.update({f"final_{n}": float(schedule[n][-1, i]) for n in names})
        row.update({"final_return": final[i], "env_steps": config.num_updates * config.batch_size,
                    "seconds": wall / len(members), "diverged": bool(bad[i])})  # fmt: skip
        rows.append(row)
    schedule_rows = [
        {"generation": g, "env_steps": int(steps[g]), "member": i, **{n: float(schedule[n][g, i]) for n in names},
         "fitness": float(fitness[g, i]), "copied_from": int(source[g, i])}
        for g in range(generations) for i in range(len(members))
    ]  # fmt: skip
    arrays: dict[str, Any] = {f"schedule_{n}": v for n, v in schedule.items()}
    arrays.update(env_steps=steps, fitness=fitness, source=source, final_return=final, diverged=bad)
    # each member is a candidate of one seed: ranked like a sweep's settings (results.rank)
    ranked = rank([{"member": i, **seed_statistics(final[i : i + 1], bad[i : i + 1])} for i in range(len(members))],
                  "member")  # fmt: skip
    top = best(ranked)
    winner, best_settings = -1, None
    if top is not None:
        winner = int(top["member"])
        best_settings = flat_settings(config, members[winner].hparams)
        best_settings.update({n: float(schedule[n][-1, winner]) for n in names})
    return PBTTables(rows, schedule_rows, arrays, best_settings, winner)
