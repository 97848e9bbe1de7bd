"""The search space of sweeps, PBT and Optuna studies: `--grid name=v1,v2` values and
`--range name=low:high[:log]` ranges parsed and checked (no JAX needed), and random settings drawn.

Grid names may be any hyperparameter or static config field (a static one splits the population
into one compiled program per value); range names are hyperparameters, plus the integer config
fields for an Optuna study (`int_config=True`).
"""

from __future__ import annotations

import itertools
import math
import typing
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from a2c_jax.config import CONFIG_NAMES, HPARAM_NAMES, A2CConfig, ConfigError

SWEEPABLE_CONFIG = tuple(n for n in CONFIG_NAMES if n not in ("env_id", "total_timesteps"))


class Range(NamedTuple):
    """A sampling range: uniform, or log-uniform when `log`; integers when both ends are ints."""

    low: float
    high: float
    log: bool


def _parse_value(name: str, text: str) -> Any:
    """Convert one textual value to the type of the field `name`."""
    if name in HPARAM_NAMES:
        kind: Any = float
    else:
        kind = typing.get_type_hints(A2CConfig)[name]
    text = text.strip()
    try:
        if name == "hidden_sizes":
            return tuple(int(x) for x in text.split("x"))
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return text  # Literal choices are validated with the config
    except ValueError:
        expected = {int: "an integer", float: "a number", bool: "true or false"}.get(kind, "a value")
        if name == "hidden_sizes":
            expected = "layer widths like 64x64"
        raise ConfigError(f"{name}={text!r} is invalid: must be {expected}") from None


INT_CONFIG = tuple(n for n in SWEEPABLE_CONFIG if typing.get_type_hints(A2CConfig)[n] is int)
"""Integer config fields an Optuna study may sample from a range (num_envs, num_steps, ...)."""


def _check_name(name: str, what: str, int_config: bool = False) -> None:
    allowed = HPARAM_NAMES + (SWEEPABLE_CONFIG if what == "grid" else INT_CONFIG if int_config else ())
    if name not in allowed:
        raise ConfigError(f"unknown {what} name {name!r}: allowed are {', '.join(allowed)}")


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """["lr=1e-4,3e-4", "ent_coef=0,0.01"] -> {"lr": [1e-4, 3e-4], "ent_coef": [0.0, 0.01]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"grid {item!r} is invalid: must look like name=v1,v2,...")
        _check_name(name, "grid")
        parts = [v for v in values.split(",") if v.strip()]
        if not parts:
            raise ConfigError(f"grid {name!r} is empty: give at least one value, like {name}=v1,v2")
        if name in grid:
            raise ConfigError(f"grid {name!r} is given twice")
        grid[name] = [_parse_value(name, v) for v in parts]
    return grid


def parse_ranges(items: Sequence[str], int_config: bool = False) -> dict[str, Range]:
    """["lr=1e-5:1e-2:log"] -> {"lr": Range(1e-5, 1e-2, True)}; HParams names, and with `int_config`
    the integer config fields too (["num_steps=4:32"] -> Range(4, 32, False), sampled as integers)."""
    ranges: dict[str, Range] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name = name.strip().replace("-", "_")
        parts = spec.split(":")
        if not sep or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "lin")):
            raise ConfigError(f"range {item!r} is invalid: must look like name=low:high or name=low:high:log")
        _check_name(name, "range", int_config)
        low, high = _parse_value(name, parts[0]), _parse_value(name, parts[1])
        log = len(parts) == 3 and parts[2] == "log"
        if not low < high:
            raise ConfigError(f"range {name}={spec!r} is invalid: low must be < high")
        if log and low <= 0:
            raise ConfigError(f"range {name}={spec!r} is invalid: a log range needs low > 0")
        ranges[name] = Range(low, high, log)
    return ranges


def sample_settings(ranges: dict[str, Range], count: int, seed: int) -> list[dict[str, float]]:
    """`count` random points of the ranges (log-uniform where asked), reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        point = {}
        for name, r in ranges.items():
            if r.log:
                point[name] = float(np.exp(rng.uniform(np.log(r.low), np.log(r.high))))
            else:
                point[name] = float(rng.uniform(r.low, r.high))
        out.append(point)
    return out


MAX_MEMBERS = 2**20
"""The largest population a sweep or PBT run accepts (settings x seeds)."""


def check_population_size(grid: dict[str, list[Any]], random: int, seeds: int) -> None:
    """ConfigError before anything is expanded when settings x seeds exceeds MAX_MEMBERS."""
    settings = math.prod(len(v) for v in grid.values()) * max(random, 1)
    if settings * seeds > MAX_MEMBERS:
        raise ConfigError(
            f"the population of {settings} settings x {seeds} seeds = {settings * seeds} members is too large: "
            f"at most {MAX_MEMBERS} members"
        )


def expand_settings(
    grid: dict[str, list[Any]], ranges: dict[str, Range], random: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Every grid point (product), each combined with `random` samples of the ranges when given."""
    if random < 0:
        raise ConfigError(f"random={random} is invalid: must be >= 0")
    if ranges and random == 0:
        raise ConfigError("ranges were given but random=0: pass --random N to sample N settings")
    if random and not ranges:
        raise ConfigError(f"random={random} needs at least one --range to sample from")
    names = list(grid)
    points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[n] for n in names))]
    samples = sample_settings(ranges, random, seed) if random else [{}]
    return [{**p, **s} for p in points for s in samples]


class SearchSpace(NamedTuple):
    """An Optuna study's space: categorical choices (`--grid`) and ranges (`--range`)."""

    grid: dict[str, list[Any]]
    ranges: dict[str, Range]

    @property
    def names(self) -> list[str]:
        return [*self.grid, *self.ranges]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description, equal for equal spaces (compared when a worker joins a study)."""
        return {
            "grid": {n: [encode_choice(v) for v in vs] for n, vs in self.grid.items()},
            "ranges": {n: [r.low, r.high, r.log] for n, r in self.ranges.items()},
        }


def encode_choice(value: Any) -> Any:
    """A categorical value as Optuna stores it (None, bool, int, float or str): tuples become '64x64'."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else value


def decode_choice(name: str, value: Any) -> Any:
    """The inverse of `encode_choice` for the field `name`."""
    return tuple(int(x) for x in value.split("x")) if name == "hidden_sizes" else value
