"""Bayesian search over vmapped populations with Optuna (`a2c-jax sweep --sampler tpe`).

Each round asks the study for a batch of trials, trains every trial x seed as one population
(`sweep.run_sweep`: one compiled program per static config), and tells each trial the IQM of its
seeds' greedy final returns. The study lives in a storage (SQLite in the output directory by
default; any database URL Optuna accepts, or an Optuna journal file) that several processes on
several machines may share: each worker asks, trains and tells its own batches, and the study
counts `trials` results across all of them.

Trials that get no result are never counted: a worker that is interrupted (Ctrl-C) fails its
running trials and queues their settings again; a worker that dies (killed, power cut) stops
sending heartbeats, and the next worker to start a round fails its stale trials and queues them
again (Optuna's `RetryHeartbeatStaleTrialCallback`, databases only). A trial whose agent diverged on any
seed is failed with the user attribute `diverged` and counts (its settings are a result: bad).

Pruning is not offered: the members of a round train in lockstep inside one compiled program, so
stopping one early frees nothing until the whole round ends; a round's size (`batch`) is the knob
that trades the sampler's feedback against throughput instead.
"""

from __future__ import annotations

import time
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from a2c_jax.config import A2CConfig, ConfigError
from a2c_jax.population.results import best, rank, seed_statistics
from a2c_jax.population.space import SearchSpace, decode_choice, encode_choice
from a2c_jax.population.storage import (  # noqa: F401  (open_storage, open_study, study_names: used through here)
    SCHEMA_RACE,
    STUDY_ATTR,
    ask_with_heartbeat,
    heartbeat,
    heartbeats_enabled,
    open_storage,
    open_study,
    storage_of,
    study_names,
    trial_id,
)

if typing.TYPE_CHECKING:
    import optuna

SAMPLERS = ("tpe", "cmaes", "gp", "random", "grid")
"""Optuna samplers `--sampler` accepts."""

"""Errors of a database schema being created by another worker at the same moment."""


class Outcome(NamedTuple):
    """What training one trial's setting over S seeds produced."""

    returns: np.ndarray  # [S] greedy final return per seed
    diverged: np.ndarray  # [S] bool
    curve_steps: np.ndarray  # [K] env steps at the end of each curve bin
    curve: np.ndarray  # [K] seed-mean training return per bin (NaN where no episode ended)
    env_steps: int  # per seed
    seconds: float  # the trial's share of its round's wall-clock, compile included


Evaluate = Callable[[list[dict[str, Any]]], list[Outcome]]
"""settings of one round -> one Outcome each, in order."""


def quiet_optuna() -> None:
    """Optuna's per-trial INFO lines and its experimental-feature warnings (heartbeats, the matplotlib
    views) off: the sweep prints its own progress and results."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def suggest_setting(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Ask the trial for a value of every name (a queued trial returns the values it was queued with)."""
    setting: dict[str, Any] = {}
    for name, values in space.grid.items():
        setting[name] = decode_choice(name, trial.suggest_categorical(name, [encode_choice(v) for v in values]))
    for name, r in space.ranges.items():
        if isinstance(r.low, int) and isinstance(r.high, int):
            setting[name] = trial.suggest_int(name, r.low, r.high, log=r.log)
        else:
            setting[name] = trial.suggest_float(name, float(r.low), float(r.high), log=r.log)
    return setting


def make_sampler(name: str, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler `name`, seeded. TPE uses the constant liar (running trials count as bad
    guesses) so the trials of one batch spread out instead of piling onto the same point."""
    import importlib.util

    import optuna

    if name not in SAMPLERS:
        raise ConfigError(f"sampler={name!r} is invalid: must be one of {', '.join(SAMPLERS)}")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if space.ranges:
            raise ConfigError(
                f"sampler='grid' takes --grid values only, not --range ({', '.join(space.ranges)}): "
                "use --grid name=v1,v2 or another sampler"
            )
        return optuna.samplers.GridSampler(space.to_json()["grid"], seed=seed)
    if name == "cmaes":
        if importlib.util.find_spec("cmaes") is None:
            raise ConfigError("sampler='cmaes' needs the cmaes package: pip install 'a2c-jax[tune]'")
        if not space.ranges:
            raise ConfigError("sampler='cmaes' searches --range names: give at least one --range")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if importlib.util.find_spec("torch") is None:
        raise ConfigError("sampler='gp' needs PyTorch: pip install torch (CPU wheel), then retry")
    return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)


def counted(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts toward the study's total: it has a result, is running, or diverged."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.RUNNING) or (
        trial.state == TrialState.FAIL and "diverged" in trial.user_attrs
    )


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome, worker: str, objective: str = "iqm") -> None:
    """Store the outcome as user attributes and the curve as intermediate values, then complete the trial
    with its score over seeds under `objective` (the IQM by default; or fail it, marked `diverged`, when
    any seed diverged)."""
    from optuna.trial import TrialState

    returns = np.asarray(outcome.returns, np.float64)
    stats = seed_statistics(returns, np.zeros(returns.shape, bool), objective)
    value = stats["score"]
    attrs = {
        "returns": [float(x) for x in returns], "seeds_diverged": [bool(x) for x in outcome.diverged],
        **{k: stats[k] for k in ("score", "iqm", "ci_low", "ci_high", "mean")},
        "env_steps": int(outcome.env_steps), "seconds": float(outcome.seconds), "worker": worker,
    }  # fmt: skip
    for key, attr in attrs.items():
        trial.set_user_attr(key, attr)
    for step, point in zip(outcome.curve_steps, outcome.curve, strict=True):
        if np.isfinite(point) and np.isfinite(step):
            trial.report(float(point), int(step))
    if np.any(outcome.diverged) or not np.isfinite(value):
        trial.set_user_attr("diverged", int(np.sum(outcome.diverged)))
        finish(study, trial, state=TrialState.FAIL)
    else:
        finish(study, trial, value)


def finish(study: optuna.Study, trial: optuna.Trial, value: float | None = None, state: Any = None) -> None:
    """`study.tell`, tolerating the grid sampler's `study.stop()` once the grid is exhausted: outside
    `Study.optimize` that raises after the trial's result is stored (the round loop stops by count)."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise


def requeue(study: optuna.Study, trial: optuna.Trial) -> None:
    """Fail an interrupted trial and queue its setting again, so a resumed or other worker runs it."""
    from optuna.trial import TrialState

    study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
    trial.set_user_attr("interrupted", True)
    finish(study, trial, state=TrialState.FAIL)


def optimize(
    study: optuna.Study,
    space: SearchSpace,
    trials: int,
    batch: int,
    evaluate: Evaluate,
    heartbeat_seconds: int = 60,
    worker: str = "",
    on_round: Callable[[int, int], None] = lambda done, total: None,
    objective: str = "iqm",
    interrupted: Callable[[], None] = lambda: None,
) -> int:
    """Run rounds until the study counts `trials` trials: fail stale trials of dead workers, ask up to
    `batch` trials, evaluate their settings together, tell each its outcome. When the total is reached
    while other workers' trials still run, wait for them (a dead one's trials come back to be retried).
    Each trial's value is its score under `objective` (`results.check_objective`). `interrupted()` is
    called after each round's evaluation and raises KeyboardInterrupt for a signal whose own raise was
    lost (`runs.loop.signals_raise`): the round's trials are then requeued as on any interrupt.
    Returns how many trials this call evaluated."""
    import optuna
    from optuna.trial import TrialState

    storage = storage_of(study)
    beats = heartbeats_enabled(storage)
    evaluated = 0
    while True:
        if beats:
            optuna.storages.fail_stale_trials(study)
        frozen = study.get_trials(deepcopy=False)
        k = min(batch, trials - sum(counted(t) for t in frozen))
        on_round(min(trials, sum(counted(t) for t in frozen if t.state != TrialState.RUNNING)), trials)
        if k <= 0:
            if beats and any(t.state == TrialState.RUNNING for t in frozen):
                time.sleep(heartbeat_seconds)
                continue
            return evaluated
        asked = [ask_with_heartbeat(study, beats) for _ in range(k)]
        try:
            with heartbeat(storage, [trial_id(t) for t in asked], heartbeat_seconds):
                settings = [suggest_setting(t, space) for t in asked]
                outcomes = evaluate(settings)
                interrupted()
        except KeyboardInterrupt:
            for t in asked:
                requeue(study, t)
            raise
        except BaseException:
            for t in asked:
                finish(study, t, state=TrialState.FAIL)
            raise
        for t, outcome in zip(asked, outcomes, strict=True):
            tell(study, t, outcome, worker, objective)
        evaluated += len(asked)


def population_evaluator(
    base_config: A2CConfig,
    base_hparams: Any,
    seeds: Sequence[int],
    eval_episodes: int,
    max_population: int | None = None,
    devices: str | None = None,
    on_progress: Callable[[int], None] = lambda done: None,
) -> Evaluate:
    """The real objective: a round's settings x seeds trained as populations (one compiled program per
    static config), each member exactly as `a2c-jax train --seed s` with its settings would train it."""
    from a2c_jax.population.sweep import Programs, make_members, run_sweep

    programs = Programs()  # agents and compiled programs kept across the study's rounds

    def evaluate(settings: list[dict[str, Any]]) -> list[Outcome]:
        members = make_members(base_config, base_hparams, settings, seeds, programs)
        result = run_sweep(
            members, settings, eval_episodes, max_population, on_progress, devices, reuse=True, programs=programs
        )
        outcomes = []
        for index in range(len(settings)):
            mine = np.array([m.setting == index for m in members])
            config = members[int(np.argmax(mine))].config
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # bins where no seed finished an episode
                curve = np.nanmean(result.curves[mine], axis=0)
            outcomes.append(
                Outcome(result.final_return[mine], result.diverged[mine], result.curve_steps[mine][0], curve,
                        config.num_updates * config.batch_size, float(result.seconds[mine].sum()))
            )  # fmt: skip
        return outcomes

    return evaluate


def study_signature(
    space: SearchSpace,
    base: dict[str, Any],
    seeds: int,
    eval_episodes: int,
    heartbeat_seconds: int,
    objective: str = "iqm",
) -> dict[str, Any]:
    """What every worker of one study must agree on (JSON-able). The heartbeat is part of it: a worker
    fails trials silent for twice its own interval, so one with a shorter interval would fail the live
    trials of a worker that beats less often."""
    return {"search_space": space.to_json(), "base_settings": base, "seeds": seeds, "eval_episodes": eval_episodes,
            "heartbeat": heartbeat_seconds, "objective": objective}  # fmt: skip


def result_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count as results (completed, or failed because they diverged), by number."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False) if counted(t) and t.state != TrialState.RUNNING]


def ranking_rows(study: optuna.Study, space: SearchSpace) -> list[dict[str, Any]]:
    """One row per result trial: its values, score (the study's objective) with 95% CI over seeds, IQM,
    mean, seeds, diverged seeds, env steps and seconds; best first, diverged trials after every clean
    one (as `sweep.rank_settings`)."""
    rows = []
    for t in result_trials(study):
        a = t.user_attrs
        rows.append(
            {"trial": t.number, **{n: decode_choice(n, t.params[n]) for n in space.names},
             "score": a.get("score", a["iqm"]), "iqm": a["iqm"], "ci_low": a["ci_low"], "ci_high": a["ci_high"],
             "mean": a["mean"], "seeds": len(a["returns"]), "diverged": int(a.get("diverged", 0)),
             "env_steps": a["env_steps"], "seconds": a["seconds"],
             "worker": a.get("worker", "")}
        )  # fmt: skip
    return rank(rows, "trial")


def member_rows(study: optuna.Study, space: SearchSpace) -> list[dict[str, Any]]:
    """One row per trial x seed: the trial's values, seed, greedy final return, env steps, diverged."""
    rows = []
    for t in result_trials(study):
        a = t.user_attrs
        values = {n: decode_choice(n, t.params[n]) for n in space.names}
        for seed, (ret, bad) in enumerate(zip(a["returns"], a["seeds_diverged"], strict=True)):
            rows.append(
                {"trial": t.number, "seed": seed, **values, "final_return": ret, "env_steps": a["env_steps"],
                 "seconds": a["seconds"] / len(a["returns"]), "diverged": bad}
            )  # fmt: skip
    return rows


def curves(study: optuna.Study) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(trial numbers [M], env steps [M, K], seed-mean training return [M, K]) from the intermediate
    values, NaN-padded to the longest curve."""
    trials = result_trials(study)
    k = max((len(t.intermediate_values) for t in trials), default=0)
    steps, values = np.full((len(trials), k), np.nan), np.full((len(trials), k), np.nan)
    for i, t in enumerate(trials):
        items = sorted(t.intermediate_values.items())
        steps[i, : len(items)] = [s for s, _ in items]
        values[i, : len(items)] = [v for _, v in items]
    return np.array([t.number for t in trials]), steps, values


def plot_study(study: optuna.Study, out: Path) -> list[str]:
    """Optuna's own views as PNGs: optimisation history and (with two or more completed trials)
    parameter importances. Returns the file names written."""
    import optuna
    import optuna.visualization.matplotlib as vis

    from a2c_jax.runs.plots import save_axes

    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib views experimental
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if complete:
            save_axes(vis.plot_optimization_history(study), out / "history.png")
            written.append("history.png")
        if len(complete) >= 2 and complete[0].params:
            try:
                save_axes(vis.plot_param_importances(study), out / "importances.png")
                written.append("importances.png")
            except (RuntimeError, ValueError) as err:  # e.g. every trial has the same values
                print(f"a2c-jax: note: no parameter importances ({err})")
    return written


MAX_STATIC_COMBINATIONS = 64
"""The most static configs (one compiled program each) a study's space may span."""


def check_space(base_config: A2CConfig, base_hparams: Any, space: SearchSpace, eval_episodes: int) -> None:
    """ConfigError, before anything is written or compiled, for a value the study could suggest that
    no config accepts: every categorical choice and both ends of every range are validated, and every
    static config the space spans must fit in memory (ints ranges checked at their ends)."""
    import dataclasses
    import itertools

    from a2c_jax.config import CONFIG_NAMES
    from a2c_jax.population.sweep import Programs, make_members
    from a2c_jax.runs.resources import check_fits

    programs = Programs()
    if not space.names:
        raise ConfigError("a study needs at least one --grid or --range name to search over")
    options = {**space.grid, **{n: [r.low, r.high] for n, r in space.ranges.items()}}
    for name, values in options.items():
        make_members(base_config, base_hparams, [{name: v} for v in values], [0], programs)
    static = {n: vs for n, vs in options.items() if n in CONFIG_NAMES}
    combos = list(itertools.islice(itertools.product(*static.values()), MAX_STATIC_COMBINATIONS + 1))
    if len(combos) > MAX_STATIC_COMBINATIONS:
        raise ConfigError(
            f"the static names {', '.join(static)} span more than {MAX_STATIC_COMBINATIONS} configs (one compiled "
            "program each): give fewer values"
        )
    for combo in combos:
        config = dataclasses.replace(base_config, **dict(zip(static, combo, strict=True))).validate()
        check_fits(programs.agent(config), config.num_updates, eval_episodes)


def best_setting(ranked: list[dict[str, Any]], space: SearchSpace) -> dict[str, Any] | None:
    """The values of the best clean trial among `ranking_rows` (None when none completed cleanly)."""
    top = best(ranked)
    return {n: top[n] for n in space.names} if top is not None else None


def write_outputs(
    study: optuna.Study, space: SearchSpace, out: Path, base_config: A2CConfig, base_hparams: Any, trackers: Any
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Everything a study sweep writes, from the study itself (so every worker, and a resumed run,
    writes the whole study): ranking.csv, results.csv, curves.npz, best.json (for `a2c-jax train
    --config`), sweep.png, history.png, importances.png and the trackers' views.
    Returns (ranked rows, best flat settings or None)."""
    from a2c_jax.config import flat_settings
    from a2c_jax.population.sweep import make_members
    from a2c_jax.runs.plots import plot_sweep
    from a2c_jax.runs.records import write_population
    from a2c_jax.runs.trackers import log_population

    ranked = ranking_rows(study, space)
    numbers, steps, values = curves(study)
    best = best_setting(ranked, space)
    flat = None
    if best is not None:
        member = make_members(base_config, base_hparams, [best], [0])[0]
        flat = flat_settings(member.config, member.hparams)
    arrays = {"trial": numbers, "env_steps": steps, "returns": values}
    write_population(out, {"ranking.csv": ranked, "results.csv": member_rows(study, space)}, arrays, flat)
    if ranked:
        plot_sweep(ranked, space.names, out / "sweep.png", f"A2C study {study.study_name} on {base_config.env_id}")
        plot_study(study, out)
        trial_rows = [
            {"trial": r["trial"], **{n: r[n] for n in space.names}, "final_return": r["iqm"],
             "env_steps": r["env_steps"], "seconds": r["seconds"]}
            for r in ranked
        ]  # fmt: skip
        order = {n: i for i, n in enumerate(numbers)}
        index = [order[r["trial"]] for r in ranked]
        log_population(trackers, out, "study", trial_rows, steps[index], {"episode_return": values[index]})
    return ranked, flat
