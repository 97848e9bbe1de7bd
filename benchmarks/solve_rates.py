"""Solve rates over many seeds: how often each env's preset reaches its threshold.

Each row trains `--seeds` seeds (default 64) of one env's preset as one population, exactly as
`a2c-jax sweep --seeds 64` does (one compiled program per env, split over the CPU cores), evaluates every
final policy greedily over `--eval-episodes` episodes, and reports the fraction of seeds whose mean
greedy return reaches the env's threshold, the IQM, the 10th percentile, the worst seed, the median env
steps at which a solving seed's training curve first reached the threshold, and the wall-clock.

    python -m benchmarks.solve_rates [--envs CartPole-v1 ...] [--preset default] [--seeds 64]
    python -m benchmarks.solve_rates --envs CartPole-v1 --set gae_lambda=0.95 --name cpu-solve-rates-candidate

Classic control runs at each preset's budget on a CPU. MinAtar rows (IQM and 10th percentile: the games
have no solve threshold) need `--envs Breakout-MinAtar ...` and, at the preset's 5M steps x 64 seeds, a
GPU; Brax and Craftax likewise.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from benchmarks.common import earlier_rows, write_result

# the score a seed must reach (mean greedy return) to count as solved: gymnasium's reward_threshold where
# it has one (CartPole 475, Acrobot -100, MountainCar -110, MountainCarContinuous 90), and -200 for
# Pendulum (gymnasium gives none; -200 is where the pendulum is swung up and held from most starts)
THRESHOLDS: dict[str, float | None] = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "MountainCar-v0": -110.0,
    "Pendulum-v1": -200.0,
    "MountainCarContinuous-v0": 90.0,
    "Breakout-MinAtar": None,
    "Asterix-MinAtar": None,
    "Freeway-MinAtar": None,
    "SpaceInvaders-MinAtar": None,
}
CLASSIC = [env for env, threshold in THRESHOLDS.items() if threshold is not None]


def parse_sets(items: list[str]) -> dict[str, str]:
    """`NAME=VALUE` overrides of the preset, as on the command line (`--set gae_lambda=0.95`)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: must be NAME=VALUE")
        out[name] = value
    return out


def first_crossing(curve: np.ndarray, steps: np.ndarray, threshold: float) -> float:
    """The env steps at the end of the first curve bin whose mean training return reaches `threshold`
    (NaN when none does). curve, steps [K]."""
    hit = np.flatnonzero(np.nan_to_num(curve, nan=-np.inf) >= threshold)
    return float(steps[hit[0]]) if hit.size else float("nan")


def run_row(env_id: str, preset_name: str, seeds: int, eval_episodes: int, sets: dict[str, str]) -> dict[str, Any]:
    """Train and evaluate one env's preset over `seeds` seeds; the row of the results file."""
    from a2c_jax.config import flat_settings, preset
    from a2c_jax.core.stats import bootstrap_ci, iqm
    from a2c_jax.population.space import parse_grid
    from a2c_jax.population.sweep import make_members, run_sweep

    config, hparams = preset(preset_name, env_id)
    setting = {name: values[0] for name, values in parse_grid(tuple(f"{k}={v}" for k, v in sets.items())).items()}
    members = make_members(config, hparams, [setting], list(range(seeds)))
    start = time.perf_counter()
    result = run_sweep(members, [setting], eval_episodes)
    wall = time.perf_counter() - start
    final = np.asarray(result.final_return, np.float64)
    low, high = bootstrap_ci(final)
    threshold = THRESHOLDS.get(env_id)
    row: dict[str, Any] = {
        "preset": preset_name, "overrides": sets, "settings": flat_settings(members[0].config, members[0].hparams),
        "seeds": seeds, "eval_episodes": eval_episodes,
        "env_steps": members[0].config.num_updates * members[0].config.batch_size,
        "final": final.tolist(), "iqm": iqm(final), "ci_low": low, "ci_high": high,
        "p10": float(np.quantile(final, 0.1)), "worst": float(final.min()), "diverged": int(result.diverged.sum()),
        "wall_seconds": wall, "compile_seconds": result.compile_seconds, "devices": result.devices,
        "threshold": threshold,
    }  # fmt: skip
    if threshold is not None:
        solved = final >= threshold
        crossings = [first_crossing(c, s, threshold) for c, s in zip(result.curves, result.curve_steps, strict=True)]
        row.update(
            solved=int(solved.sum()),
            solve_rate=float(solved.mean()),
            unsolved_returns=sorted(final[~solved].tolist()),
            median_steps_to_threshold=float(np.nanmedian(crossings)) if np.isfinite(crossings).any() else None,
        )
    return row


def describe(env_id: str, row: dict[str, Any]) -> str:
    """One printed line per row."""
    head = f"{env_id} ({row['preset']}{', ' + str(row['overrides']) if row['overrides'] else ''}): "
    if row["threshold"] is not None:
        head += f"{row['solved']}/{row['seeds']} seeds reach {row['threshold']:g}; "
    return head + (
        f"IQM {row['iqm']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}], p10 {row['p10']:.1f}, worst "
        f"{row['worst']:.1f} after {row['env_steps']:,} steps; {row['wall_seconds']:.0f} s for all seeds"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=CLASSIC, choices=list(THRESHOLDS))
    parser.add_argument("--preset", default="default", choices=["default", "sb3", "zoo"])
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--eval-episodes", type=int, default=16)
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE over the preset (repeatable)")
    parser.add_argument("--name", default="cpu-solve-rates")
    args = parser.parse_args()
    from a2c_jax.runs.process import configure_process

    configure_process()  # as the command does, so each member equals `a2c-jax train --seed s`
    sets = parse_sets(args.set)
    rows = earlier_rows(args.name) or {}  # one row can be re-measured on its own
    for env_id in args.envs:
        rows[f"{env_id} {args.preset}"] = row = run_row(env_id, args.preset, args.seeds, args.eval_episodes, sets)
        print(describe(env_id, row), flush=True)
        write_result(args.name, {"benchmark": "solve_rates", "rows": rows})
    print(f"wrote benchmarks/results/{args.name}.json")


if __name__ == "__main__":
    main()
