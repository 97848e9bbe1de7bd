"""Final greedy returns across classic control and MinAtar, beside the published references.

Each row trains `--seeds` seeds of one preset together in one vmapped program (as `a2c-jax train`
trains one), evaluates each final policy greedily over 16 episodes, and reports the IQM with a 95%
bootstrap interval, the env steps per seed, and the program's wall-clock (all seeds, compile included).
The classic envs run at their preset budgets; MinAtar runs at a CPU budget (`--minatar-steps`, the
row says which), and at the preset's full budget in the GPU script (`benchmarks/gpu_suite.py`).

    python -m benchmarks.returns_table [--seeds 5] [--minatar-steps 2000000] [--envs ...]
    python -m benchmarks.returns_table --envs brax:inverted_pendulum@spring brax:hopper@spring  # extra brax
    python -m benchmarks.returns_table --envs craftax:Craftax-Classic-Symbolic-v1 --seeds 3 --steps 500000
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.common import earlier_rows, write_result
from benchmarks.learning_quality import jax_runs, summary

# env id -> (preset used, published reference or None, RL-Zoo's A2C reference or None). The reference is
# gymnax's PPO/ES result for gymnax envs; for Brax's inverted_pendulum it is the maximum (1 per step for
# 1,000 steps); no published figure at these budgets was at hand for hopper and Craftax (README).
ROWS: dict[str, tuple[str, float | None, float | None]] = {
    "CartPole-v1": ("default", 500.0, 500.0),
    "Acrobot-v1": ("zoo", -80.0, -83.0),
    "MountainCar-v0": ("zoo", -118.0, -111.0),
    "Pendulum-v1": ("default", -130.0, -163.0),
    "MountainCarContinuous-v0": ("zoo", 92.0, None),
    "Breakout-MinAtar": ("default", 28.0, None),
    "Asterix-MinAtar": ("default", 15.0, None),
    "Freeway-MinAtar": ("default", 58.0, None),
    "SpaceInvaders-MinAtar": ("default", 131.0, None),
    "brax:inverted_pendulum@spring": ("default", 1000.0, None),
    "brax:hopper@spring": ("default", None, None),
    "craftax:Craftax-Classic-Symbolic-v1": ("default", None, None),
}


def run_row(env_id: str, seeds: int, minatar_steps: int | None, steps: int | None = None) -> dict[str, Any]:
    """Train and evaluate one row; `minatar_steps` sets MinAtar budgets and `steps` the others' (None:
    the preset's)."""
    from a2c_jax.config import preset

    preset_name, gymnax_ref, zoo_ref = ROWS[env_id]
    budget = preset(preset_name, env_id)[0].total_timesteps
    cap = minatar_steps if env_id.endswith("MinAtar") else steps
    scale = cap / budget if cap else 1.0
    run = jax_runs(env_id, preset_name, seeds, scale)
    row = {**run, **summary(run["final"]), "seeds": seeds, "gymnax_reference": gymnax_ref, "zoo_a2c_reference": zoo_ref}
    row["budget"] = "preset" if scale == 1.0 else f"CPU budget ({run['env_steps']:,} of the preset's {budget:,})"
    return row


def describe(env_id: str, row: dict[str, Any]) -> str:
    """One printed line per row."""
    return (
        f"{env_id}: IQM {row['iqm']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}] after {row['env_steps']:,} "
        f"steps, {row['wall_seconds']:.0f} s for {row['seeds']} seeds (reference {row['gymnax_reference']})"
    )


def markdown(rows: dict[str, dict[str, Any]]) -> str:
    """The README's table."""
    lines = [
        "| env | preset | budget per seed | a2c_jax IQM [95% CI] | wall-clock (all seeds, one program) "
        "| gymnax PPO/ES | RL-Zoo A2C |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for env_id, r in rows.items():
        zoo = "-" if r["zoo_a2c_reference"] is None else f"{r['zoo_a2c_reference']:g}"
        ref = "-" if r["gymnax_reference"] is None else f"{r['gymnax_reference']:g}"
        cpu = "" if r["budget"] == "preset" else " (CPU budget)"
        lines.append(
            f"| {env_id} | `{r['preset']}` | {r['env_steps']:,}{cpu} | {r['iqm']:.1f} [{r['ci_low']:.1f}, "
            f"{r['ci_high']:.1f}] | {r['wall_seconds']:.0f} s | {ref} | {zoo} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--minatar-steps", type=int, default=2_000_000, help="0: the preset's full budget")
    parser.add_argument("--steps", type=int, default=0, help="env steps per seed for non-MinAtar rows; 0: the preset's")
    parser.add_argument("--name", default="cpu-returns-table")
    args = parser.parse_args()
    rows = earlier_rows(args.name) or {}  # so one row can be re-measured on its own
    for env_id in args.envs:
        rows[env_id] = row = run_row(env_id, args.seeds, args.minatar_steps or None, args.steps or None)
        print(describe(env_id, row), flush=True)
        # written after every row, so a long run leaves its finished rows behind
        write_result(args.name, {"benchmark": "returns_table", "seeds": args.seeds, "rows": rows})
    print(markdown({env_id: rows[env_id] for env_id in ROWS if env_id in rows}))
    print(f"wrote benchmarks/results/{args.name}.json")


if __name__ == "__main__":
    main()
