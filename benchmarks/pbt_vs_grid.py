"""PBT against a grid search at equal env steps: the same members (learning rates x seeds), trained
once with fixed hyperparameters (grid) and once with exploit/explore every `interval` updates (PBT).

    python -m benchmarks.pbt_vs_grid [--env-id Pendulum-v1] [--steps 1000000] [--lrs 1e-4 3e-4 1e-3 3e-3]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np

from a2c_jax.config import HParams, preset
from a2c_jax.core import stats
from a2c_jax.population import sweep
from a2c_jax.population.pbt import make_pbt
from benchmarks.common import write_result


def summary(returns: np.ndarray) -> dict:
    low, high = stats.bootstrap_ci(returns)
    return {"iqm": stats.iqm(returns), "ci_low": low, "ci_high": high, "mean": float(returns.mean()),
            "returns": returns.tolist()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps per member")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=16)
    args = parser.parse_args()
    config, hparams = preset("default", args.env_id)
    config = dataclasses.replace(config, total_timesteps=args.steps)
    settings = [{"lr": lr} for lr in args.lrs]
    members = sweep.make_members(config, hparams, settings, list(range(args.seeds)))

    t = time.perf_counter()
    grid = sweep.run_sweep(members, settings, args.episodes)
    grid_seconds = time.perf_counter() - t
    best_setting = sweep.rank_settings(grid)[0]
    best_returns = np.array(
        [r for m, r in zip(members, grid.final_return, strict=True) if m.setting == best_setting["setting"]]
    )

    interval = max(1, config.num_updates // args.generations)
    program = jax.jit(make_pbt(config, interval, ["lr"], 0.25, args.episodes))
    seeds = np.array([m.seed for m in members], np.int32)
    t = time.perf_counter()
    out = jax.block_until_ready(program(seeds, sweep.stack_hparams(members), jax.random.PRNGKey(0)))
    pbt_seconds = time.perf_counter() - t
    pbt_final = np.asarray(out.final_return, np.float64)

    result = {
        "benchmark": "pbt_vs_grid",
        "env_id": args.env_id,
        "config": dataclasses.asdict(config),
        "base_hparams": HParams.to_dict(hparams),
        "members": len(members),
        "env_steps_per_member": config.num_updates * config.batch_size,
        "interval_updates": interval,
        "grid_all_members": summary(grid.final_return),
        "grid_best_setting": {"lr": best_setting["lr"], **summary(best_returns)},
        "pbt_all_members": summary(pbt_final),
        "pbt_top_quarter": summary(np.sort(pbt_final)[-max(1, len(pbt_final) // 4) :]),
        "pbt_final_lr": np.asarray(out.schedule.lr[-1]).tolist(),
        "grid_seconds": grid_seconds,
        "pbt_seconds": pbt_seconds,
    }
    print(f"grid, all members:      IQM {result['grid_all_members']['iqm']:.1f}")
    print(f"grid, best lr {best_setting['lr']:g}:   IQM {result['grid_best_setting']['iqm']:.1f}")
    print(f"PBT, all members:       IQM {result['pbt_all_members']['iqm']:.1f}")
    print(f"wrote {write_result(f'cpu-pbt-vs-grid-{args.env_id}', result)}")


if __name__ == "__main__":
    main()
