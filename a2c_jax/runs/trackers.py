"""Experiment trackers that mirror what a run writes (`a2c-jax train|sweep --log tensorboard`).

For `train`, metrics.jsonl stays the source of truth: a tracker receives the same records, each
numeric field a scalar against env steps (`train/<field>`), the resolved settings as text, and the
learning-curve figure at the end; a resumed run purges the events written after its checkpoint, as
metrics.jsonl is truncated there, so a curve never holds the same env step twice. For `sweep`, whose
whole population is one compiled program, each member becomes a run of its own when the sweep ends
(its training curve, and its settings with its final greedy return in TensorBoard's hyperparameter
table), so members compare side by side.

TensorBoard is written with tensorboardX (no TensorFlow), Weights & Biases with wandb; both are
optional extras (`pip install 'a2c-jax[tensorboard]'`, `'a2c-jax[wandb]'`). W&B runs offline (into
RUN_DIR/wandb, `wandb sync` uploads them later) unless WANDB_MODE says otherwise, so nothing needs a
network; WANDB_PROJECT names the project (default "a2c-jax").
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from a2c_jax.config import ConfigError

TRACKERS: dict[str, tuple[str, str]] = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}
"""tracker name -> (the module it needs, the extra that installs it)."""

X_AXIS = "env_steps"
LABELS = ("trial", "setting", "seed")
"""Row fields that name a population member in W&B's chart keys (those the rows have)."""


class Tracker(Protocol):
    """A sink for a run's records (called on the primary process only)."""

    def log(self, record: Mapping[str, Any]) -> None:
        """One metrics.jsonl record (it holds `env_steps`, the x axis)."""

    def image(self, name: str, path: Path, step: int) -> None:
        """A PNG written by the run (the learning curve)."""

    def close(self) -> None:
        """Flush and release the sink."""


def parse_trackers(text: str) -> tuple[str, ...]:
    """`"tensorboard"` (comma-separated, may be empty) -> the tracker names; ConfigError naming the
    field for an unknown name, or the extra to install for a tracker whose package is missing."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"log={text!r} is invalid: must be a comma-separated list of {', '.join(TRACKERS)}")
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"--log {name} needs the {module} package: pip install 'a2c-jax[{extra}]'")
    if "wandb" in names:
        check_wandb_environment()
    return names


WANDB_MODES = ("offline", "online", "disabled", "dryrun", "run", "shared")
"""The values W&B accepts for WANDB_MODE (its Settings.mode)."""


def check_wandb_environment(environ: Mapping[str, str] = os.environ) -> None:
    """ConfigError, before anything runs, for a WANDB_MODE W&B would reject, or an online mode with no API
    key anywhere (W&B would retry its login for about a minute and a half, then fail)."""
    mode = environ.get("WANDB_MODE") or "offline"
    if mode not in WANDB_MODES:
        raise ConfigError(f"WANDB_MODE={mode!r} is invalid: must be one of {', '.join(WANDB_MODES)}")
    if mode in ("online", "run", "shared") and not environ.get("WANDB_API_KEY"):
        netrc = Path(environ.get("NETRC") or Path.home() / ".netrc")
        known = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
        if not known:
            raise ConfigError(
                f"WANDB_MODE={mode!r} needs a W&B API key (WANDB_API_KEY, or `wandb login`); without one use "
                "WANDB_MODE=offline (the default) and `wandb sync` later"
            )


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric fields of a record except the x axis (NaN: no episode ended in the chunk)."""
    out = {}
    for key, value in record.items():
        if key != X_AXIS and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


class TensorBoardTracker:
    """Scalars `train/<field>` against env steps, the settings as text, images; in RUN_DIR/tensorboard."""

    def __init__(self, run_dir: Path, settings: Mapping[str, Any], resume_step: int | None = None) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(run_dir / "tensorboard"), purge_step=resume_step)
        if resume_step is None:
            text = "```json\n" + json.dumps(settings, indent=2, default=str) + "\n```"
            self.writer.add_text("settings", text, 0)

    def log(self, record: Mapping[str, Any]) -> None:
        step = int(record[X_AXIS])
        for key, value in scalars(record).items():
            self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.flush()

    def image(self, name: str, path: Path, step: int) -> None:
        import matplotlib.image

        pixels = matplotlib.image.imread(path)[..., :3]  # H x W x RGB floats in [0, 1]
        self.writer.add_image(name, pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """One W&B run per process: `train/<field>` against `env_steps` (W&B's own step is left alone, so
    a resumed run, a new W&B run in the same group, needs no monotonic step), the settings as its
    config, the learning curve as an image."""

    def __init__(self, run_dir: Path, settings: Mapping[str, Any], group: str) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "a2c-jax"),
            name=run_dir.name,
            group=group,
            dir=str(run_dir),
            config=dict(settings),
            mode=os.environ.get("WANDB_MODE") or "offline",  # type: ignore[arg-type]
            settings=wandb.Settings(quiet=True, silent=True, console="off"),  # our progress bar and messages stay ours
        )
        self.run.define_metric(X_AXIS)
        self.run.define_metric("train/*", step_metric=X_AXIS)

    def log(self, record: Mapping[str, Any]) -> None:
        values: dict[str, Any] = {f"train/{k}": v for k, v in scalars(record).items()}
        self.run.log({X_AXIS: int(record[X_AXIS]), **values})

    def image(self, name: str, path: Path, step: int) -> None:
        self.run.log({X_AXIS: step, name: self.wandb.Image(str(path))})

    def close(self) -> None:
        self.run.finish()


def open_trackers(
    names: Sequence[str], run_dir: Path, settings: Mapping[str, Any], resume_step: int | None = None
) -> list[Tracker]:
    """One tracker per name (see `parse_trackers`); a resumed run passes `resume_step`, the first env step
    after its checkpoint: whatever was logged from there on is discarded, as metrics.jsonl is truncated."""
    trackers: list[Tracker] = []
    for name in names:
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(run_dir, settings, resume_step))
        elif name == "wandb":
            trackers.append(WandbTracker(run_dir, settings, group=run_dir.name))
    return trackers


def finite_points(steps: Any, values: Any) -> tuple[list[int], list[float]]:
    """(env steps, values) [K] of one member's series without its non-finite points (NaN: no episode
    ended in that bin; -inf: PBT fitness of a generation without one)."""
    points = [(int(x), float(y)) for x, y in zip(steps, values, strict=True) if math.isfinite(float(y))]
    return [x for x, _ in points], [y for _, y in points]


def log_population(
    names: Sequence[str],
    out: Path,
    kind: str,
    rows: Sequence[Mapping[str, Any]],
    steps: Any,
    series: Mapping[str, Any],
    x_name: str = "env steps",
) -> None:
    """Write a population's members (a sweep or PBT: `kind`) to the trackers `names`.

    TensorBoard: each member a run of its own under OUT/tensorboard/member-NNNN (TensorBoard compares
    runs side by side, and sorts them by any column of its HParams table). W&B: one run for the whole
    population in OUT/wandb (a run per member would cost W&B's start-up, seconds, per
    member), with the members as a table and each series as one line-series chart.

    rows[i]: member i's row of results.csv (its settings, seed, final return; an Optuna study's rows are
    trials, with the IQM over seeds as final return); steps [M, K]: env steps;
    series: name -> [M, K] values per member (e.g. "episode_return" of a sweep; PBT's "fitness" and each
    searched hyperparameter per generation), logged as `<kind>/<name>`; x_name: what `steps` counts.
    """
    if "wandb" in names:
        _wandb_population(out, kind, rows, steps, series, x_name)
    if "tensorboard" not in names:
        return
    from tensorboardX import SummaryWriter

    for i, row in enumerate(rows):
        with SummaryWriter(logdir=str(out / "tensorboard" / f"member-{i:04d}")) as writer:
            for name, values in series.items():
                for x, y in zip(*finite_points(steps[i], values[i]), strict=True):
                    writer.add_scalar(f"{kind}/{name}", y, x)
            hparams = {k: v for k, v in row.items() if k not in ("final_return", "env_steps", "seconds")}
            writer.add_hparams(hparams, {"hparam/final_return": float(row["final_return"])}, name="hparams")


def _wandb_population(
    out: Path, kind: str, rows: Sequence[Mapping[str, Any]], steps: Any, series: Mapping[str, Any], x_name: str
) -> None:
    """One offline (unless WANDB_MODE says otherwise) W&B run in OUT/wandb: a "members" table (the
    rows of results.csv) and, per series, every member's values against env steps in one chart."""
    import wandb

    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "a2c-jax"),
        name=out.name,
        group=out.name,
        job_type=kind,
        dir=str(out),
        mode=os.environ.get("WANDB_MODE") or "offline",  # type: ignore[arg-type]
        settings=wandb.Settings(quiet=True, silent=True, console="off"),
    )
    names = list(rows[0])
    columns: list[str | int] = list(names)
    run.log({"members": wandb.Table(columns=columns, data=[[row[c] for c in names] for row in rows])})
    keys = [f"member {i} ({', '.join(f'{k} {row[k]}' for k in LABELS if k in row)})" for i, row in enumerate(rows)]
    for name, values in series.items():
        xs, ys = zip(*(finite_points(steps[i], values[i]) for i in range(len(rows))), strict=True)
        chart = wandb.plot.line_series(xs=list(xs), ys=list(ys), keys=keys, title=name, xname=x_name)
        run.log({f"{kind}/{name}": chart})
    run.finish()


def log_rlhf(names: Sequence[str], out: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Write an RLHF run (`a2c-jax rlhf` / `rlhf-sweep`) to the trackers `names` as a population with one
    member per beta (a sweep's policies are one vmapped program, as a sweep's members are): every
    numeric field of its metrics.jsonl records `rlhf/<field>` against A2C updates, and the beta with
    the final gold reward (`final_return`) in TensorBoard's hyperparameter table.

    records: metrics.jsonl lines, each with `update` and `beta`; a field a line lacks is a gap.
    """
    import numpy as np

    betas = list(dict.fromkeys(float(r["beta"]) for r in records))
    updates = sorted({int(r["update"]) for r in records})
    column = {u: j for j, u in enumerate(updates)}
    fields = sorted({k for r in records for k in scalars(r)} - {"update", "beta"})
    series = {f: np.full((len(betas), len(updates)), np.nan) for f in fields}
    for r in records:
        for key, value in scalars(r).items():
            if key in series:
                series[key][betas.index(float(r["beta"])), column[int(r["update"])]] = value
    gold = series.get("eval_gold", np.full((len(betas), len(updates)), np.nan))
    rows = []
    for i, beta in enumerate(betas):
        finite_gold = finite_points(updates, gold[i])[1]
        rows.append({"beta": beta, "final_return": finite_gold[-1] if finite_gold else math.nan})
    log_population(names, out, "rlhf", rows, np.tile(updates, (len(betas), 1)), series, x_name="A2C updates")
