"""Walk every environment of a family as tests/test_all_envs.py walks gymnax's: build it, then train
a few updates of its `default` preset (a handful of envs and steps) and check the metrics are finite,
or record the clear error it gave. Too slow for the test suite for Brax (5-30 s to build and compile
each env on a 2-core CPU), so its results are saved: benchmarks/results/<name>.json.

    python -m benchmarks.walk_envs --family brax [--backend spring] --name cpu-walk-brax
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import traceback

import jax
import numpy as np

from a2c_jax.config import ConfigError, preset
from a2c_jax.core.train import make_train
from a2c_jax.envs import make_env
from benchmarks.common import earlier_rows, write_result


def family_names(family: str, backend: str | None) -> list[str]:
    """Every env id of `family` (brax or craftax), each with `@backend` for Brax when given."""
    if family == "brax":
        from a2c_jax.envs.brax import NAMES

        return [f"brax:{n}" + (f"@{backend}" if backend else "") for n in NAMES]
    from a2c_jax.envs.craftax import NAMES as CRAFTAX

    return [f"craftax:{n}" for n in CRAFTAX]


def walk(env_id: str) -> dict:
    """Build `env_id` and train 3 updates of 4 envs x 8 steps; the outcome and its seconds."""
    start = time.perf_counter()
    try:
        _, _, spec = make_env(env_id)
    except ConfigError as err:
        return {"env_id": env_id, "outcome": "clear error", "error": str(err), "seconds": time.perf_counter() - start}
    built = time.perf_counter()
    config, hparams = preset("default", env_id)
    config = dataclasses.replace(config, num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3).validate()
    try:
        _, metrics = jax.jit(make_train(config))(jax.random.PRNGKey(0), hparams)
        finite = bool(np.isfinite(np.asarray(metrics.loss)).all() and np.isfinite(np.asarray(metrics.grad_norm)).all())
        outcome = "trained, finite metrics" if finite else "trained, NON-FINITE metrics"
        error = None
    except Exception as err:
        outcome, error = "failed while training", "".join(traceback.format_exception_only(err)).strip()
    return {
        "env_id": env_id, "outcome": outcome, "error": error, "obs_shape": list(spec.obs_shape),
        "action_dim": spec.action_dim, "build_seconds": built - start, "seconds": time.perf_counter() - start,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["brax", "craftax"], default="brax")
    parser.add_argument("--backend", default=None, help="Brax physics backend (default: Brax's own)")
    parser.add_argument("--only", nargs="+", default=None, help="these env ids only (rows of others are kept)")
    parser.add_argument("--name", default=None, help="default: cpu-walk-<family>")
    args = parser.parse_args()
    name = args.name or f"cpu-walk-{args.family}"
    rows = {r["env_id"]: r for r in earlier_rows(name) or []}  # so one env can be walked again on its own
    for env_id in args.only or family_names(args.family, args.backend):
        rows[env_id] = row = walk(env_id)
        print(f"{env_id}: {row['outcome']} ({row['seconds']:.0f} s) {row['error'] or ''}", flush=True)
        write_result(name, {"benchmark": "walk_envs", "rows": list(rows.values())})


if __name__ == "__main__":
    main()
