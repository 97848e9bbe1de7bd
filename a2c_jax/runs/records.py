"""Host-side sinks: atomic JSON files, the metrics.jsonl log, per-chunk aggregation, progress bar."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from a2c_jax.config import ConfigError
from a2c_jax.core.stats import weighted_mean

if TYPE_CHECKING:  # the host sinks need no JAX program (nor gymnax) imported
    from a2c_jax.core.train import UpdateMetrics


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> None:
    """`write_bytes_atomic` of UTF-8 text."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file in the same directory, fsync, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one. The file gets
    the permissions the umask gives a new file (mkstemp alone would leave it readable by the owner only).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """`write_text_atomic` of pretty-printed JSON."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path, field: str) -> Any:
    """Parse a JSON file; ConfigError (one line, naming `field` and the path) when it cannot be read."""
    shown = f"{field}={str(path)!r}"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{shown} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown} is a directory, not a JSON file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{shown} cannot be read ({getattr(err, 'strerror', None) or err})") from None
    except ValueError as err:
        raise ConfigError(f"{shown} is not a readable JSON file ({err})") from None


def summarize_chunk(metrics: UpdateMetrics, num_valid: int) -> dict[str, float]:
    """Collapse the first `num_valid` rows of a chunk's metrics into one log record.

    Losses are averaged over updates; episode return and length are averaged over the episodes that
    ended in the chunk (NaN when none did).
    """
    m = {k: np.asarray(v)[:num_valid].astype(np.float64) for k, v in metrics._asdict().items()}
    episodes = m["episodes"].sum()
    record = {k: float(v.mean()) for k, v in m.items() if k not in ("episode_return", "episode_length", "episodes")}
    record["learning_rate"] = float(m["learning_rate"][-1])
    for name in ("episode_return", "episode_length"):
        record[name] = float(weighted_mean(m[name], m["episodes"], empty=math.nan))
    record["episodes"] = int(episodes)
    return record


def first_nonfinite(metrics: UpdateMetrics, num_valid: int) -> int | None:
    """Index of the first update in the chunk whose loss or gradient norm is not finite."""
    bad = ~(np.isfinite(np.asarray(metrics.loss)[:num_valid]) & np.isfinite(np.asarray(metrics.grad_norm)[:num_valid]))
    return int(np.argmax(bad)) if bad.any() else None


class MetricsLog:
    """Appends one JSON object per line to RUN_DIR/metrics.jsonl (NaN written as null)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, update: int) -> None:
        """Drop records logged after `update` (used when resuming from an earlier checkpoint)."""
        if not self.path.exists():
            return
        keep = [line for line in self.read() if line["update"] <= update]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def append(self, record: Mapping[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(clean) + "\n")
        except OSError as err:  # a write error carries no file name: the message names it
            raise OSError(err.errno, err.strerror, str(self.path)) from None

    def read(self) -> list[dict[str, Any]]:
        """Every complete record; a line torn by a crash mid-write (or otherwise unreadable) is skipped."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("update"), int):
                records.append(record)
        return records


@contextmanager
def progress_bar(total_steps: int, enabled: bool) -> Iterator[Any]:
    """A rich progress bar over env steps that shows steps/s and the recent episode return.

    Yields `advance(steps_done, steps_per_second, recent_return)`.
    """
    if not enabled:
        yield lambda *_: None
        return
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
        TextColumn("{task.fields[sps]} steps/s"),
        TextColumn("return {task.fields[ret]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, refresh_per_second=8) as progress:
        task = progress.add_task("train", total=total_steps, sps="-", ret="-")

        def advance(done: int, sps: float, ret: float) -> None:
            shown = "-" if not math.isfinite(ret) else f"{ret:.1f}"
            progress.update(task, completed=done, sps=f"{sps:,.0f}", ret=shown)

        yield advance


@contextmanager
def count_bar(total: int, label: str, enabled: bool) -> Iterator[Any]:
    """A rich progress bar over `total` items; yields `advance(done)`."""
    if not enabled:
        yield lambda *_: None
        return
    columns = (
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as CSV (header = union of keys, in first-seen order; tuples as 64x64)."""
    import csv
    import io

    header: list[str] = []
    for r in rows:
        header.extend(k for k in r if k not in header)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("x".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in r.items()})
    return buffer.getvalue()


def write_population(
    out: Path, tables: Mapping[str, list[dict[str, Any]]], arrays: Mapping[str, Any], best: dict[str, Any] | None
) -> None:
    """What every population search writes (grid and random sweeps, Optuna studies, PBT), each file
    atomically: the CSV `tables` (name -> rows, e.g. results.csv, ranking.csv), curves.npz holding
    `arrays`, and best.json (flat settings for `a2c-jax train --config`) unless `best` is None."""
    import io

    for name, rows in tables.items():
        write_text_atomic(out / name, csv_text(rows))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(out / "curves.npz", buffer.getvalue())
    if best is not None:
        write_json_atomic(out / "best.json", best)
