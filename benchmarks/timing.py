"""Side-by-side timing of training loops: each contender is built (compiled) once and warmed up, then
timed in `repeats` rounds that interleave the contenders, so a slow minute of the machine falls on
every side alike. A row reports the median rate and its range over the rounds.

A contender is `prepare() -> run`, where `run(updates)` trains that many updates and returns once the
work is done (its device synced); `batch` env steps make one update. `threads`, when given, is set as
PyTorch's intra-op thread count before each of its calls.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

Run = Callable[[int], None]


@dataclasses.dataclass
class Contender:
    """One implementation at one setting: `prepare()` builds and compiles it and returns its `run`."""

    name: str
    prepare: Callable[[], Run]
    batch: int
    threads: int | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def spread(rates: list[float]) -> dict[str, Any]:
    """Median, min and max of repeated measurements, with the measurements themselves."""
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": rates}


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _timed(run: Run, updates: int) -> float:
    t = time.perf_counter()
    run(updates)
    return time.perf_counter() - t


def time_interleaved(contenders: list[Contender], seconds: float, repeats: int) -> dict[str, dict[str, Any]]:
    """Env steps/s of every contender: `{name: {"median", "min", "max", "repeats", "setup_seconds",
    "updates_per_repeat", ...info}}`; a contender whose `prepare` or warm-up raises is reported with
    its "error" and left out of the rounds."""
    out: dict[str, dict[str, Any]] = {}
    ready: list[tuple[Contender, Run, int]] = []
    for c in contenders:
        _set_threads(c.threads)
        try:
            t = time.perf_counter()
            run = c.prepare()
            run(2)  # the first calls compile or fill caches
            setup = time.perf_counter() - t
            probe = 4
            while (elapsed := _timed(run, probe)) < 0.05 * seconds and probe < 1 << 20:
                probe *= 4
        except Exception as err:  # a variant that cannot run here (no CUDA, no compiler) is recorded
            out[c.name] = {"error": f"{type(err).__name__}: {err}"[:300], "threads": c.threads, **c.info}
            print(f"  {c.name}: {out[c.name]['error']}", flush=True)
            continue
        updates = max(2, round(probe * seconds / max(elapsed, 1e-9)))
        out[c.name] = {"setup_seconds": setup, "updates_per_repeat": updates, "threads": c.threads, **c.info}
        ready.append((c, run, updates))
    rates: dict[str, list[float]] = {c.name: [] for c, _, _ in ready}
    for _ in range(repeats):
        for c, run, updates in ready:
            _set_threads(c.threads)
            rates[c.name].append(updates * c.batch / _timed(run, updates))
    for c, _, _ in ready:
        out[c.name].update(spread(rates[c.name]))
        print(f"  {c.name}: {out[c.name]['median']:,.0f} steps/s (range {out[c.name]['min']:,.0f}-"
              f"{out[c.name]['max']:,.0f})", flush=True)  # fmt: skip
    return out


def time_calls(contenders: list[Contender], repeats: int) -> dict[str, dict[str, Any]]:
    """For contenders whose one call takes seconds (a large model's update): `prepare`, one warm-up call
    (compilation included, reported as "setup_seconds"), then `repeats` rounds of one call each,
    interleaved across contenders. Rates are `batch` units per second of one call: `{name: {"median",
    "min", "max", "repeats", "setup_seconds", ...info}}`; a contender that raises is reported with its
    "error"."""
    out: dict[str, dict[str, Any]] = {}
    ready: list[tuple[Contender, Run]] = []
    for c in contenders:
        _set_threads(c.threads)
        try:
            t = time.perf_counter()
            run = c.prepare()
            run(1)
            out[c.name] = {"setup_seconds": time.perf_counter() - t, "threads": c.threads, **c.info}
            ready.append((c, run))
        except Exception as err:
            out[c.name] = {"error": f"{type(err).__name__}: {err}"[:300], "threads": c.threads, **c.info}
            print(f"  {c.name}: {out[c.name]['error']}", flush=True)
    rates: dict[str, list[float]] = {c.name: [] for c, _ in ready}
    for _ in range(repeats):
        for c, run in ready:
            _set_threads(c.threads)
            rates[c.name].append(c.batch / _timed(run, 1))
    for c, _ in ready:
        out[c.name].update(spread(rates[c.name]))
        print(f"  {c.name}: {out[c.name]['median']:,.4g}/s (range {out[c.name]['min']:,.4g}-{out[c.name]['max']:,.4g}; "
              f"{c.batch / out[c.name]['median']:.3g} s per call)", flush=True)  # fmt: skip
    return out
