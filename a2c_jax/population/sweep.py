"""Hyperparameter sweeps: a population of seeds x settings trained as one vmapped program per
static configuration.

A setting is one point of the search space: a value for every swept name. Names that are `HParams`
leaves stay traced and share one compiled program; names that are `A2CConfig` fields (num_envs,
num_steps, hidden_sizes, optimizer, ...) change the program, so settings are grouped by their
static config and each group compiles once. A group larger than `max_population` runs in equal
chunks (the last one padded), so every chunk reuses the same executable.

Member i of a sweep with seed s trains exactly like `a2c-jax train --seed s` with its settings, and
is evaluated with the same key, so a sweep's numbers can be reproduced one run at a time.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.config import CONFIG_NAMES, HPARAM_NAMES, A2CConfig, ConfigError, HParams, flat_settings
from a2c_jax.core.evaluate import evaluate_final
from a2c_jax.core.train import Agent, TrainState, UpdateMetrics, build_agent, init_state, make_run_chunk
from a2c_jax.population.results import best, rank, seed_statistics
from a2c_jax.runs.distributed import (
    POP,
    Layout,
    cpu_population_devices,
    population_layout,
    round_up,
    state_shardings,
)
from a2c_jax.runs.loop import Job, run_loop
from a2c_jax.runs.resources import available_bytes, eval_bytes, train_bytes


@dataclasses.dataclass(frozen=True)
class Member:
    """One agent of the population: its static config, hyperparameters, seed and setting index."""

    config: A2CConfig
    hparams: HParams
    seed: int
    setting: int


@dataclasses.dataclass
class Programs:
    """What a sweep builds once and reuses, owned by the caller and passed explicitly: the Agent of
    each static config, the jitted population program per (config, evaluation episodes, layout), and
    the population sizes compiled for each (so an Optuna study's later rounds reuse them)."""

    agents: dict[A2CConfig, Agent] = dataclasses.field(default_factory=dict)
    programs: dict[tuple[A2CConfig, int, Layout | None], Any] = dataclasses.field(default_factory=dict)
    sizes: dict[tuple[A2CConfig, int, Layout | None], set[int]] = dataclasses.field(default_factory=dict)

    def agent(self, config: A2CConfig) -> Agent:
        """`build_agent(config)`, built on first use."""
        if config not in self.agents:
            self.agents[config] = build_agent(config)
        return self.agents[config]

    def program(self, config: A2CConfig, eval_episodes: int, layout: Layout | None) -> Any:
        """`population_program` for the config's Agent, built on first use."""
        key = (config, eval_episodes, layout)
        if key not in self.programs:
            self.programs[key] = population_program(self.agent(config), eval_episodes, layout)
        return self.programs[key]


def make_members(
    base_config: A2CConfig,
    base_hparams: HParams,
    settings: list[dict[str, Any]],
    seeds: Sequence[int],
    programs: Programs | None = None,
) -> list[Member]:
    """settings x seeds, each validated (a bad value raises ConfigError before anything compiles);
    every static config's Agent is built into `programs` (a new one when None)."""
    if not seeds:
        raise ConfigError("seeds is empty: need at least one seed")
    programs = Programs() if programs is None else programs
    members: list[Member] = []
    for index, setting in enumerate(settings):
        cfg_part = {k: v for k, v in setting.items() if k in CONFIG_NAMES}
        hp_part = {k: v for k, v in setting.items() if k in HPARAM_NAMES}
        config = dataclasses.replace(base_config, **cfg_part).validate()
        hparams = base_hparams._replace(**hp_part).validate()
        programs.agent(config)
        members.extend(Member(config, hparams, int(s), index) for s in seeds)
    return members


def member_bytes(agent: Agent, eval_episodes: int) -> int:
    """An upper estimate of the memory one member needs: a fused training run, then its evaluation."""
    return max(train_bytes(agent, agent.config.num_updates), eval_bytes(agent, eval_episodes))


class GroupResult(NamedTuple):
    """Per-member outputs of one static-config group, in member order."""

    final_return: np.ndarray  # [P] greedy evaluation mean
    diverged: np.ndarray  # [P] bool: a non-finite loss, gradient or parameter at some update
    curve_return: np.ndarray  # [P, U] mean return of episodes that ended in each update (NaN if none)
    seconds: float  # wall-clock of the group, compile included
    compile_seconds: float
    chunks: int
    devices: int  # how many devices the members were split over


def population_program(agent: Agent, eval_episodes: int, layout: Layout | None = None) -> Any:
    """jit(vmap(member)): each member trains from PRNGKey(seed) and is evaluated greedily, as
    `a2c-jax train` does. program(seeds [P], hparams leaves [P]) -> (final return [P], per-update
    episode return [P, U], episodes [P, U], diverged [P]).

    With a `layout` the population axis is sharded over its "pop" devices and each member's env axis
    over its "env" devices (a 2-D mesh); the outputs come back replicated.
    """
    run = make_run_chunk(agent, agent.config.num_updates)

    def program(seeds: jax.Array, hparams: HParams) -> tuple[jax.Array, ...]:
        keys = jax.vmap(jax.random.PRNGKey)(seeds)
        states = jax.vmap(lambda k, h: init_state(agent, h, k))(keys, hparams)
        states = constrain_population(states, layout)
        states, metrics = jax.vmap(run)(states, hparams)
        result = jax.vmap(lambda s, k: evaluate_final(agent, s, k, eval_episodes))(states, keys)
        bad = jax.vmap(diverged)(states, metrics)
        return result.returns.mean(axis=-1), metrics.episode_return, metrics.episodes, bad

    if layout is None:
        return jax.jit(program)
    pop = layout.sharding(POP)
    return jax.jit(program, in_shardings=(pop, pop), out_shardings=layout.replicated)


def constrain_population(states: TrainState, layout: Layout | None) -> TrainState:
    """Pin a population of states to the layout ("pop" x "env"); identity without one."""
    if layout is None:
        return states
    return jax.lax.with_sharding_constraint(states, state_shardings(states, layout, population=True))


def diverged(state: TrainState, metrics: UpdateMetrics) -> jax.Array:
    """True when any update's loss or gradient norm, or any final parameter, is not finite."""
    finite = jnp.isfinite(metrics.loss).all() & jnp.isfinite(metrics.grad_norm).all()
    for leaf in jax.tree.leaves(state.params):
        finite &= jnp.isfinite(leaf).all()
    return ~finite


def stack_hparams(members: Sequence[Member]) -> HParams:
    """HParams whose leaves are [P] float32 arrays."""
    return jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *[m.hparams for m in members])


@dataclasses.dataclass
class SweepProgress:
    """Where a sweep keeps the outputs of its finished population chunks (OUT/progress/group-G-chunk-C.npz,
    each written atomically), so that an interrupted sweep continues with the chunks it had not finished;
    `stop_requested` (the host loop's signal flag) and `resume_hint` come with it."""

    directory: Path
    stop_requested: Callable[[], int] = lambda: 0
    resume_hint: str = ""

    def path(self, group: int, chunk: int) -> Path:
        return self.directory / f"group-{group}-chunk-{chunk}.npz"

    def load(self, group: int) -> tuple[int | None, dict[int, tuple[np.ndarray, ...]]]:
        """(the chunk size the group ran with, {chunk: outputs}) of what a previous run finished."""
        done: dict[int, tuple[np.ndarray, ...]] = {}
        size = None
        for path in sorted(self.directory.glob(f"group-{group}-chunk-*.npz")):
            with np.load(path) as data:
                done[int(path.stem.rsplit("-", 1)[1])] = tuple(data[k] for k in GROUP_OUTPUTS)
                size = int(data["size"])
        return size, done

    def save(self, group: int, chunk: int, outputs: tuple[np.ndarray, ...], size: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path(group, chunk).with_suffix(".tmp.npz")
        arrays: dict[str, Any] = {"size": np.asarray(size), **dict(zip(GROUP_OUTPUTS, outputs, strict=True))}
        np.savez(tmp, **arrays)
        tmp.replace(self.path(group, chunk))


GROUP_OUTPUTS = ("final_return", "episode_return", "episodes", "diverged")
"""What a population program returns per member, in order."""


def chunk_plan(
    count: int,
    eval_episodes: int,
    max_population: int | None,
    devices: str | None,
    reuse: bool,
    agent: Agent,
    programs: Programs,
    saved_size: int | None = None,
) -> tuple[int, Layout | None]:
    """(members per chunk, device layout) for `count` members of `agent`'s config (see `run_group`); a
    resumed group keeps the `saved_size` it started with. Records the size as compiled in `programs`."""
    config = agent.config
    limit = max_population or max(1, available_bytes() // member_bytes(agent, eval_episodes))
    size = math.ceil(count / math.ceil(count / limit))
    cores = cpu_population_devices()
    if devices is None and round_up(size, cores) <= limit:
        size = round_up(size, cores)
    layout = population_layout(devices, config.num_envs, saved_size or size)
    if layout is not None:
        size = round_up(size, layout.pop_devices)
    compiled_sizes = programs.sizes.setdefault((config, eval_episodes, layout), set())
    if reuse:
        size = min((s for s in compiled_sizes if size <= s <= min(2 * size, limit)), default=size)
    size = saved_size or size
    compiled_sizes.add(size)
    return size, layout


def run_group(
    members: Sequence[Member],
    eval_episodes: int,
    max_population: int | None,
    on_chunk: Callable[[int], None],
    devices: str | None = None,
    reuse: bool = False,
    programs: Programs | None = None,
    progress: SweepProgress | None = None,
    group: int = 0,
) -> GroupResult:
    """Train members that share one static config, in equal chunks of at most `max_population`
    (each chunk a multiple of the devices on the population axis, padded with copies). With `reuse`
    a chunk is padded up to a size already compiled for this config when that at most doubles it, so
    populations of changing sizes (an Optuna study's rounds) reuse a few compiled programs instead of
    compiling one per size. `devices` None splits the members over the CPU's cores
    (`distributed.population_layout`), padding the chunk to a multiple of them unless that would
    pass `max_population` (then as many cores as divide the chunk). `programs` keeps what was built
    and compiled for the next call (a new, throw-away one when None).

    The chunks run through the one host loop (`runs.loop`): with `progress`, each finished chunk's
    outputs are kept, chunks a previous run finished are not trained again (with the chunk size it
    used), and a signal stops the sweep after the current chunk (`Interrupted`)."""
    programs = Programs() if programs is None else programs
    config = members[0].config
    saved_size, done = progress.load(group) if progress is not None else (None, {})
    size, layout = chunk_plan(len(members), eval_episodes, max_population, devices, reuse, programs.agent(config),
                              programs, saved_size)  # fmt: skip
    n_chunks = math.ceil(len(members) / size)
    program = programs.program(config, eval_episodes, layout)
    start = time.perf_counter()
    padded = list(members) + [members[-1]] * (size * n_chunks - len(members))
    seeds = jnp.asarray([m.seed for m in padded], jnp.int32)
    hps = stack_hparams(padded)
    compile_seconds = 0.0
    if len(done) < n_chunks:
        t = time.perf_counter()
        compiled = program.lower(seeds[:size], jax.tree.map(lambda x: x[:size], hps)).compile()
        compile_seconds = time.perf_counter() - t

    def run_chunk(c: int, n: int) -> tuple[int, tuple[np.ndarray, ...]]:
        sl = slice(c * size, (c + 1) * size)
        outputs = compiled(seeds[sl], jax.tree.map(lambda x, sl=sl: x[sl], hps))
        return c + 1, tuple(np.asarray(x) for x in outputs)

    def record(next_chunk: int, outputs: tuple[np.ndarray, ...], c: int, n: int) -> None:
        done[c] = outputs
        if progress is not None:
            progress.save(group, c, outputs, size)
        on_chunk(min(next_chunk * size, len(members)))
        return None

    first = next((c for c in range(n_chunks) if c not in done), n_chunks)
    if first:  # a resumed group: its progress bar starts at the chunks already done
        on_chunk(min(first * size, len(members)))
    stop = progress.stop_requested if progress is not None else (lambda: 0)
    hint = progress.resume_hint if progress is not None else ""
    run_loop(Job(run_chunk, n_chunks, 1, record, lambda c: None, hint, what="population chunk", stop_requested=stop),
             first, first)  # fmt: skip
    n = len(members)
    final, ret, cnt, bad = (np.concatenate([done[c][k] for c in range(n_chunks)])[:n] for k in range(4))
    curve = np.where(cnt > 0, ret, np.nan)
    return GroupResult(
        final,
        bad.astype(bool),
        curve,
        time.perf_counter() - start,
        compile_seconds,
        n_chunks,
        1 if layout is None else layout.size,
    )


def downsample_curve(curve: np.ndarray, points: int) -> np.ndarray:
    """[P, U] per-update returns -> [P, points] bin means (NaN-aware)."""
    p, u = curve.shape
    points = min(points, u)
    edges = np.linspace(0, u, points + 1).astype(int)
    out = np.full((p, points), np.nan)
    for i in range(points):
        block = curve[:, edges[i] : edges[i + 1]]
        valid = ~np.isnan(block)
        with np.errstate(invalid="ignore"):
            out[:, i] = np.where(valid.any(1), np.nansum(block, 1) / np.maximum(valid.sum(1), 1), np.nan)
    return out


CURVE_POINTS = 100


@dataclasses.dataclass
class SweepResult:
    """Everything a sweep produced, one entry per member (M = settings x seeds).

    curves are [M, K] (K <= CURVE_POINTS) mean training returns per bin and curve_steps the env
    steps at each bin's end; `seconds` is each member's share of its group's wall-clock (compile included).
    """

    members: list[Member]
    settings: list[dict[str, Any]]
    final_return: np.ndarray
    diverged: np.ndarray
    curves: np.ndarray
    curve_steps: np.ndarray
    seconds: np.ndarray
    wall_seconds: float
    compile_seconds: float
    groups: int
    devices: int  # the most devices a group was split over


def _offset(callback: Callable[[int], None], base: int, n: int) -> None:
    callback(base + n)


def run_sweep(
    members: list[Member],
    settings: list[dict[str, Any]],
    eval_episodes: int = 16,
    max_population: int | None = None,
    on_progress: Callable[[int], None] = lambda done: None,
    devices: str | None = None,
    reuse: bool = False,
    programs: Programs | None = None,
    progress: SweepProgress | None = None,
) -> SweepResult:
    """Train every member, one vmapped program per static config, and collect results. Pass the same
    `programs` to later calls (and to `make_members`) to reuse the agents and compiled programs; with
    `progress` the sweep keeps each finished chunk and continues an interrupted one (see `run_group`)."""
    programs = Programs() if programs is None else programs
    start = time.perf_counter()
    groups: dict[A2CConfig, list[int]] = {}
    for i, m in enumerate(members):
        groups.setdefault(m.config, []).append(i)
    final = np.zeros(len(members))
    bad = np.zeros(len(members), bool)
    points = min(CURVE_POINTS, max(m.config.num_updates for m in members))
    curves = np.full((len(members), points), np.nan)
    steps = np.full((len(members), points), np.nan)  # NaN past a shorter group's last point
    seconds = np.zeros(len(members))
    compile_total, done, most_devices = 0.0, 0, 1
    for group, (config, idx) in enumerate(groups.items()):
        base = done
        res = run_group(
            [members[i] for i in idx],
            eval_episodes,
            max_population,
            functools.partial(_offset, on_progress, base),
            devices,
            reuse,
            programs,
            progress,
            group,
        )
        done += len(idx)
        final[idx] = res.final_return
        bad[idx] = res.diverged
        down = downsample_curve(res.curve_return, points)
        curves[idx, : down.shape[1]] = down
        edges = np.linspace(0, config.num_updates, down.shape[1] + 1)[1:]
        steps[idx, : down.shape[1]] = np.round(edges) * config.batch_size
        seconds[idx] = res.seconds / len(idx)
        compile_total += res.compile_seconds
        most_devices = max(most_devices, res.devices)
    return SweepResult(
        members,
        settings,
        final,
        bad,
        curves,
        steps,
        seconds,
        time.perf_counter() - start,
        compile_total,
        len(groups),
        most_devices,
    )


def rank_settings(result: SweepResult, objective: str = "iqm") -> list[dict[str, Any]]:
    """One row per setting: its values, its score under `objective` (`results.check_objective`: the IQM
    by default) with a 95% bootstrap interval across seeds, IQM, mean, and how many of its seeds
    diverged; best first, every setting with a diverged seed after every clean one."""
    rows = []
    for index, setting in enumerate(result.settings):
        mine = np.array([m.setting == index for m in result.members])
        stats = seed_statistics(result.final_return[mine], result.diverged[mine], objective)
        rows.append({"setting": index, **setting, **stats})
    return rank(rows, "setting")


def member_rows(result: SweepResult) -> list[dict[str, Any]]:
    """One row per member: every hyperparameter and swept config field, seed, return, steps, seconds."""
    swept_config = sorted({k for s in result.settings for k in s if k in CONFIG_NAMES})
    rows = []
    for m, ret, sec, bad in zip(result.members, result.final_return, result.seconds, result.diverged, strict=True):
        row: dict[str, Any] = {"setting": m.setting, "seed": m.seed}
        row.update({k: float(v) for k, v in m.hparams.to_dict().items()})
        row.update({k: getattr(m.config, k) for k in swept_config})
        row.update({"final_return": float(ret), "env_steps": m.config.num_updates * m.config.batch_size,
                    "seconds": float(sec), "diverged": bool(bad)})  # fmt: skip
        rows.append(row)
    return rows


def best_config(result: SweepResult, ranked: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best setting none of whose seeds diverged, as a flat settings file for `a2c-jax train
    --config`; None when every setting diverged."""
    top = best(ranked)
    if top is None:
        return None
    member = next(m for m in result.members if m.setting == top["setting"])
    return flat_settings(member.config, member.hparams)
