"""The host loop behind `a2c-jax train`: compiled chunks of updates with progress, logging,
checkpoints, interruption handling and a final evaluation. Everything here runs on the host;
the compiled work is `make_run_chunk` and `evaluate`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.config import A2CConfig, ConfigError, HParams
from a2c_jax.core.evaluate import evaluate_final, evaluate_final_jit
from a2c_jax.core.train import (
    Agent,
    TrainState,
    build_agent,
    init_state,
    jit_once,
    make_run_chunk,
    run_once_options,
)
from a2c_jax.runs.checkpoint import CheckpointWriter, latest_step, restore_checkpoint, set_aside_newer
from a2c_jax.runs.distributed import (
    Layout,
    abstract_with_shardings,
    any_process,
    barrier,
    check_processes_agree,
    is_primary,
    layout_for,
    state_shardings,
)
from a2c_jax.runs.lock import locked
from a2c_jax.runs.loop import Diverged, Interrupted, Job, LoopClock, chunk_length, graceful_stop, run_loop
from a2c_jax.runs.programs import compile_program
from a2c_jax.runs.records import (
    MetricsLog,
    first_nonfinite,
    progress_bar,
    read_json,
    summarize_chunk,
    write_json_atomic,
)
from a2c_jax.runs.resources import check_fits
from a2c_jax.runs.rundir import (  # noqa: F401  (the run-directory names scripts import from runner)
    RunSettings,
    check_output_dir,
    load_run_record,
    parse_run_record,
    prepare_fresh_dir,
    restartable,
    run_record,
    run_record_settings,
    warn,
)
from a2c_jax.runs.trackers import Tracker, open_trackers, parse_trackers


class RunDirectoryGone(RuntimeError):
    """The run directory disappeared while training (a fault: exit 1, nothing re-created)."""


TrainingDiverged = Diverged
"""Training's name for the loop's `Diverged` (kept for scripts that catch it)."""
TrainingInterrupted = Interrupted
"""Training's name for the loop's `Interrupted`."""


def params_finite(params: Any) -> bool:
    """True when every parameter is finite."""
    return all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(params))


def abstract_state(agent: Agent) -> TrainState:
    """The TrainState's shapes and dtypes (nothing is computed)."""
    return jax.eval_shape(functools.partial(init_state, agent), HParams().as_arrays(), jax.random.PRNGKey(0))


def as_population_of_one(run_chunk: Callable[..., Any]) -> Callable[..., Any]:
    """`run_chunk(state, hparams, n)` computed as a population of one member: vmapped over a leading
    axis of size 1 that is added to the state and hyperparameters and taken off the results.

    The same maths; on a CPU, XLA compiles the dots that then have a batch dimension by a faster path:
    1.32x / 1.65x / 1.35x env steps per second at 8 / 512 / 4,096 envs on a 2-core CPU
    (`benchmarks/results/cpu-vmap-one.json`); split over CPU devices (`--devices`), 0.98x / 1.03x /
    1.21x at 64 / 512 / 4,096 envs (`cpu-devices-split.json`). Results agree with the plain program to float32
    rounding, not bit for bit. Used on CPUs only (not measured on accelerators).
    """

    def run(state: TrainState, hparams: HParams, n: Any) -> Any:
        one = jax.tree.map(lambda x: x[None], (state, hparams))
        out = jax.vmap(run_chunk, in_axes=(0, 0, None))(*one, n)
        return jax.tree.map(lambda x: x[0], out)

    return run


def compile_chunk(agent: Agent, chunk: int, layout: Layout | None = None, programs: Path | None = None) -> Any:
    """The compiled `run_chunk(state, hparams, n)` for `agent` (compiled on every call: keep it).

    With a `layout` the state's env axis is sharded over its devices and the metrics come out
    replicated, so every process can read them. On one device, a `programs` store
    (`runs.programs`) lets a warm start load the program instead of tracing it.
    """
    state = abstract_state(agent)
    hp = jax.eval_shape(HParams().as_arrays)
    run = make_run_chunk(agent, chunk)
    if jax.default_backend() == "cpu":
        run = as_population_of_one(run)
    if layout is None:
        n = jax.ShapeDtypeStruct((), jnp.int32)
        key = {"config": dataclasses.asdict(agent.config), "chunk": chunk}
        return compile_program(run, (state, hp, n), name="chunk", key=key, store=programs)
    shard, rep = state_shardings(state, layout), layout.replicated
    program = jax.jit(run, in_shardings=(shard, rep, rep), out_shardings=(shard, rep))
    return program.lower(state, hp, jnp.int32(chunk)).compile()


def chunk_size(config: A2CConfig, settings: RunSettings) -> int:
    """Updates per compiled chunk of the host loop (`loop.chunk_length` of the run's log points)."""
    return chunk_length(config.num_updates, settings.log_points)


def check_run(agent: Agent, hparams: HParams, settings: RunSettings) -> Layout | None:
    """Every check of a run before anything is written (`agent` = `build_agent(config)`, whose building
    validated the config, the env id and its spaces); returns the run's device layout."""
    hparams.validate()
    settings.validate()
    layout = layout_for(settings.devices, agent.config.num_envs)
    check_fits(agent, chunk_size(agent.config, settings), settings.eval_episodes)
    return layout


def open_run(
    agent: Agent,
    hparams: HParams,
    run_dir: Path,
    settings: RunSettings,
    resume: bool,
    log: Callable[[str], None],
    layout: Layout | None,
    programs: Path | None = None,
) -> tuple[TrainState, dict[str, Any], Layout | None] | None:
    """Start `run_dir` fresh or restore its newest intact checkpoint (after `check_run`, with the
    directory locked by this process).

    Returns (state, meta of the checkpoint or {}, the run's device layout), or None when a resumed
    run has already finished. A directory that never reached its first checkpoint is started again
    in place (a crash or Ctrl-C during the first compile is no dead end).
    """
    config = agent.config
    hp = hparams.as_arrays()
    key = jax.random.PRNGKey(settings.seed)
    ckpt_dir = run_dir / "checkpoints"
    abstract = abstract_state(agent)
    shardings = None if layout is None else state_shardings(abstract, layout)
    if resume and latest_step(ckpt_dir) is not None:
        like = abstract
        if shardings is not None:  # restored straight into this run's layout, whatever layout saved it
            like = abstract_with_shardings(like, shardings)
        state, meta, step = restore_checkpoint(ckpt_dir, like, warn=warn)
        if int(state.update_step) > config.num_updates:
            raise ConfigError(
                f"total_timesteps={config.total_timesteps} is invalid: the run has already trained "
                f"{int(state.update_step) * config.batch_size} steps"
            )
        if int(state.update_step) == config.num_updates and (run_dir / "summary.json").exists():
            if is_primary() and set_aside_newer(ckpt_dir, step):  # so that eval stops warning about them
                warn(f"moved unreadable checkpoint(s) newer than {step} to {str(run_dir / 'corrupt_checkpoints')!r}")
            return None
        if is_primary():
            moved = set_aside_newer(ckpt_dir, step)
            if moved:
                warn(f"moved unreadable checkpoint(s) {moved} to {str(run_dir / 'corrupt_checkpoints')!r}")
            write_json_atomic(run_dir / "config.json", run_record(config, hparams, settings))
            MetricsLog(run_dir / "metrics.jsonl").truncate_after(int(meta["update"]))
        barrier("a2c-jax-open")
        return state, meta, layout
    if is_primary():
        try:
            prepare_fresh_dir(run_dir, resume)
        except OSError as err:
            raise ConfigError(f"run_dir={str(run_dir)!r} cannot be used ({err.strerror or err})") from None
        check_output_dir(run_dir, "run_dir")
        write_json_atomic(run_dir / "config.json", run_record(config, hparams, settings))
    barrier("a2c-jax-open")
    if layout is None and programs is not None:
        args = jax.eval_shape(lambda: (hp, key))
        init = compile_program(
            functools.partial(init_state, agent),
            args,
            name="init",
            key={"config": dataclasses.asdict(config)},
            store=programs,
            compiler_options=run_once_options(),
        )
        return init(hp, key), {}, layout
    return jit_once(init_state, static_argnums=0, out_shardings=shardings)(agent, hp, key), {}, layout


def train_run(
    config: A2CConfig,
    hparams: HParams,
    run_dir: Path,
    settings: RunSettings = RunSettings(),
    resume: bool = False,
    log: Callable[[str], None] = print,
    programs: Path | None = None,
) -> dict[str, Any]:
    """Train with the host loop over compiled chunks; write config.json, metrics.jsonl, checkpoints,
    summary.json and learning_curve.png into `run_dir`; return the summary.

    With `resume=True` training continues from the newest intact checkpoint in `run_dir` (or starts
    it again when it has none); pass the configuration that `load_run_record(run_dir)` reads back
    (the result equals an uninterrupted run with the same seed). Resuming a finished run returns its
    summary. `programs` is a store of exported programs (`runs.programs`) that lets a warm start skip
    tracing (the CLI's, beside its compilation cache); None traces every program.
    """
    wall_start = time.perf_counter()
    trackers: list[Tracker] = []
    try:
        with graceful_stop(warn) as stop_requested, contextlib.ExitStack() as hold:
            log = log if is_primary() else _silent
            agent = build_agent(config)  # unknown env ids and unsupported spaces fail before anything is written
            layout = check_run(agent, hparams, settings)
            check_processes_agree({**run_record(config, hparams, settings), "run_dir": str(run_dir), "resume": resume})
            hold.enter_context(locked(run_dir, "run_dir", is_primary()))  # one writer per run directory
            opened = open_run(agent, hparams, run_dir, settings, resume, log, layout, programs)
            if opened is None:
                summary = read_json(run_dir / "summary.json", "summary")
                log(f"{str(run_dir)!r} has already finished ({config.num_updates} updates); nothing to do")
                return dict(summary)
            state, meta, layout = opened
            evaluation = None  # loaded while training runs
            if layout is None and programs is not None:
                prepare = functools.partial(evaluation_program, agent, settings.eval_episodes, programs)
                evaluation = InBackground(prepare)
            if is_primary():
                import_in_background("orbax.checkpoint", "a2c_jax.runs.plots")  # the first save; the plot
            where = "" if layout is None else f" on {layout.size} device(s) in {jax.process_count()} process(es)"
            log(f"a2c-jax: training {config.env_id} (seed {settings.seed}){where} -> {run_dir}")
            resume_step = int(meta["env_steps"]) + 1 if meta else None  # trackers drop what followed the checkpoint
            names = parse_trackers(settings.log) if is_primary() else ()
            trackers = open_trackers(names, run_dir, run_record(config, hparams, settings), resume_step)
            times = RunTimes(wall_start, float(meta.get("wall_seconds", 0.0)), float(meta.get("compile_seconds", 0.0)))
            state = train_loop(
                agent, hparams, state, run_dir, settings, layout, trackers, times, stop_requested, programs
            )
            return finish_run(agent, state, run_dir, settings, layout, trackers, times, resume, log, evaluation)
    finally:
        for tracker in trackers:
            tracker.close()


def import_in_background(*modules: str) -> None:
    """Import `modules`, one after the other, on a daemon thread (`InBackground`; nothing waits for it).

    What a run needs only later is slow to import on a 2-core CPU: orbax (its first checkpoint, ~0.3 s)
    and matplotlib (the learning-curve plot, ~0.7 s). Started before training, the imports run while
    the main thread waits on the compiled chunks; an import the main thread starts meanwhile waits for
    the thread's (Python's per-module import lock), so nothing is imported twice or half-way.
    """
    InBackground(lambda: [importlib.import_module(module) for module in modules])


def _silent(text: str) -> None:
    """The log of every process but the first."""


@dataclasses.dataclass
class RunTimes:
    """Wall-clock bookkeeping of a run: when this process started, what earlier sessions of a resumed
    run spent, this session's compile time and the loop's clock."""

    wall_start: float
    prior_wall: float = 0.0
    prior_compile: float = 0.0
    compile_seconds: float = 0.0
    clock: LoopClock = dataclasses.field(default_factory=LoopClock)

    def wall(self) -> float:
        return self.prior_wall + time.perf_counter() - self.wall_start


@dataclasses.dataclass
class ChunkRecords:
    """What `a2c-jax train` does with each chunk of the host loop: the divergence check (a non-finite loss,
    gradient or parameter), then metrics.jsonl, the trackers and the progress bar (process 0)."""

    config: A2CConfig
    metrics_log: MetricsLog
    trackers: list[Tracker]
    times: RunTimes
    advance: Callable[..., None]

    def __call__(self, new_state: TrainState, metrics: Any, before: int, n: int) -> int | None:
        """The index of the chunk's first bad update, or None after writing its record."""
        bad = first_nonfinite(metrics, n)
        if bad is None and not params_finite(new_state.params):
            bad = n - 1
        if bad is not None:
            return bad
        batch = self.config.batch_size
        row: dict[str, Any] = {"update": before + n, "env_steps": (before + n) * batch}
        row.update(summarize_chunk(metrics, n))
        row["wall_seconds"] = self.times.wall()
        if is_primary():
            self.metrics_log.append(row)
            for tracker in self.trackers:
                tracker.log(row)
        rate = (before + n - self.times.clock.start_step) * batch / max(self.times.clock.train_seconds, 1e-9)
        self.advance((before + n) * batch, rate, row["episode_return"])
        return None


def train_loop(
    agent: Agent,
    hparams: HParams,
    state: TrainState,
    run_dir: Path,
    settings: RunSettings,
    layout: Layout | None,
    trackers: list[Tracker],
    times: RunTimes,
    stop_requested: Callable[[], int],
    programs: Path | None = None,
) -> TrainState:
    """Train `state` to the config's last update through the one host loop (`runs.loop.run_loop`):
    metrics.jsonl and trackers per chunk, the progress bar, checkpoints in RUN_DIR/checkpoints."""
    config, total = agent.config, agent.config.num_updates
    chunk = chunk_size(config, settings)
    done = int(state.update_step)
    hp = hparams.as_arrays()
    ckpt_dir = run_dir / "checkpoints"
    writer = CheckpointWriter(ckpt_dir)
    metrics_log = MetricsLog(run_dir / "metrics.jsonl")
    t0 = time.perf_counter()
    compiled = compile_chunk(agent, chunk, layout, programs) if done < total else None
    times.compile_seconds = time.perf_counter() - t0

    def run_chunk(s: TrainState, n: int) -> tuple[TrainState, Any]:
        new_state, metrics = compiled(s, hp, jnp.int32(n))  # type: ignore[misc]
        return jax.block_until_ready(new_state), metrics

    def save(s: TrainState) -> None:
        if is_primary() and not (run_dir / "config.json").is_file():  # never write into a run that was removed
            raise RunDirectoryGone(
                f"the run directory {str(run_dir)!r} lost its config.json while training (removed?): stopped "
                "without writing into it"
            )
        step = int(s.update_step)
        meta = {
            "update": step,
            "env_steps": step * config.batch_size,
            "wall_seconds": times.wall(),
            "compile_seconds": times.prior_compile + times.compile_seconds,
        }
        writer.save(step, s, meta)

    with progress_bar(total * config.batch_size, settings.progress and is_primary()) as advance:
        advance(done * config.batch_size, 0.0, math.nan)
        record = ChunkRecords(config, metrics_log, trackers, times, advance)
        job = Job(
            run_chunk,
            total,
            chunk,
            record,
            save,
            resume_hint=f"a2c-jax train --resume {run_dir}",
            describe=lambda u: f"update {u} (env step {u * config.batch_size})",
            checkpoints=str(ckpt_dir),
            checkpoint_seconds=settings.checkpoint_seconds,
            stop_requested=stop_requested,
            agree=any_process,
        )
        try:
            return run_loop(job, state, done, times.clock)
        finally:
            writer.close()


class InBackground:
    """`fun()` started on a daemon thread; `result()` waits for it and returns (or raises) what it did."""

    def __init__(self, fun: Callable[[], Any]) -> None:
        self._outcome: list[Any] = []
        self._thread = threading.Thread(target=self._run, args=(fun,), name="a2c-jax-background", daemon=True)
        self._thread.start()

    def _run(self, fun: Callable[[], Any]) -> None:
        try:
            self._outcome.append((True, fun()))
        except BaseException as err:  # handed to the thread that asks for the result
            self._outcome.append((False, err))

    def result(self) -> Any:
        self._thread.join()
        ok, value = self._outcome[0]
        if not ok:
            raise value
        return value


def evaluation_program(agent: Agent, episodes: int, programs: Path) -> Callable[[TrainState, jax.Array], Any]:
    """The compiled `evaluate_final(agent, state, key, episodes)` on one device, from the `programs` store."""
    return compile_program(
        lambda s, k: evaluate_final(agent, s, k, episodes),
        (abstract_state(agent), jax.eval_shape(lambda: jax.random.PRNGKey(0))),
        name="evaluate",
        key={"config": dataclasses.asdict(agent.config), "episodes": episodes},
        store=programs,
        compiler_options=run_once_options(),
    )


def final_evaluation(
    agent: Agent, state: TrainState, key: jax.Array, episodes: int, layout: Layout | None, prepared: Any = None
) -> Any:
    """`evaluate_final` of the trained state: replicated over a `layout` (every process reads the
    returns), or by the `prepared` program (an `InBackground` of `evaluation_program`) when there is one."""
    if layout is not None:
        return jit_once(evaluate_final, static_argnums=(0, 3), out_shardings=layout.replicated)(
            agent, state, key, episodes
        )
    if prepared is None:
        return evaluate_final_jit(agent, state, key, episodes)
    return prepared.result()(state, key)


def finish_run(
    agent: Agent,
    state: TrainState,
    run_dir: Path,
    settings: RunSettings,
    layout: Layout | None,
    trackers: list[Tracker],
    times: RunTimes,
    resume: bool,
    log: Callable[[str], None],
    evaluation: InBackground | None = None,
) -> dict[str, Any]:
    """Greedy evaluation (by the `evaluation` program prepared while training ran, when there is
    one), summary.json, then the learning-curve plot; returns the summary."""
    config = agent.config
    done = int(state.update_step)
    key = jax.random.PRNGKey(settings.seed)
    result = final_evaluation(agent, state, key, settings.eval_episodes, layout, evaluation)
    returns = np.asarray(result.returns, np.float64)
    records = MetricsLog(run_dir / "metrics.jsonl").read()
    train_seconds = times.clock.train_seconds
    trained_steps = (done - times.clock.start_step) * config.batch_size
    last_return = next((r["episode_return"] for r in reversed(records) if r.get("episode_return") is not None), None)
    summary = {
        "env_id": config.env_id,
        "seed": settings.seed,
        "env_steps": done * config.batch_size,
        "updates": done,
        "wall_seconds": times.wall(),
        "compile_seconds": times.prior_compile + times.compile_seconds,
        "train_seconds": train_seconds,
        "steps_per_second": trained_steps / train_seconds if train_seconds > 0 else None,
        "eval_return_mean": float(returns.mean()),
        "eval_return_std": float(returns.std()),
        "eval_episodes": settings.eval_episodes,
        "final_train_return": last_return,
        "resumed": resume,
    }
    if is_primary():
        from a2c_jax.runs.plots import plot_learning_curve

        write_json_atomic(run_dir / "summary.json", summary)
        plot_learning_curve(records, run_dir / "learning_curve.png", f"A2C on {config.env_id}", float(returns.mean()))
        for tracker in trackers:
            tracker.image("learning_curve", run_dir / "learning_curve.png", done * config.batch_size)
    barrier("a2c-jax-finish")
    rate = summary["steps_per_second"]
    log(
        f"{config.env_id}: {summary['env_steps']:,} steps in {summary['wall_seconds']:.1f}s "
        f"(compile {summary['compile_seconds']:.1f}s, "
        + (f"{rate:,.0f} steps/s); " if rate else "nothing left to train); ")
        + f"greedy eval return {summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f} "
        f"over {settings.eval_episodes} episodes -> {run_dir}"
    )
    return summary
