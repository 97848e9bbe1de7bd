"""A study worker with a synthetic objective, for the multi-worker tests: it opens the storage, joins
the study and runs `tuning.optimize` exactly as `a2c-jax sweep --sampler` does, but each trial's
"training" is a closed-form function of its setting (plus an optional sleep), so workers start in a
second instead of compiling A2C.

    python tests/_study_worker.py STORAGE STUDY SAMPLER TRIALS BATCH HEARTBEAT SLEEP_SECONDS
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from a2c_jax.population.space import SearchSpace, parse_ranges
from a2c_jax.population.study import (
    Outcome,
    make_sampler,
    open_storage,
    open_study,
    optimize,
    quiet_optuna,
    study_signature,
)

SPACE = SearchSpace({}, parse_ranges(["lr=1e-5:1e-1:log", "ent_coef=0:0.1"]))
SEEDS = 3


def objective(setting: dict) -> float:
    """Peak 0 at lr = 1e-3, ent_coef = 0.02."""
    return -((math.log10(setting["lr"]) + 3) ** 2) - ((setting["ent_coef"] - 0.02) / 0.02) ** 2


def synthetic_evaluator(sleep: float = 0.0):
    def evaluate(settings: list[dict]) -> list[Outcome]:
        time.sleep(sleep)
        return [
            Outcome(np.full(SEEDS, objective(s)), np.zeros(SEEDS, bool), np.array([100.0, 200.0]),
                    np.array([objective(s) - 1, objective(s)]), 200, sleep / len(settings))
            for s in settings
        ]  # fmt: skip

    return evaluate


def main() -> None:
    storage_url, name, sampler, trials, batch, heartbeat, sleep = sys.argv[1:8]
    quiet_optuna()
    storage = open_storage(storage_url, int(heartbeat))
    signature = study_signature(SPACE, {"objective": "synthetic"}, SEEDS, 1, int(heartbeat))
    study = open_study(storage, name, make_sampler(sampler, SPACE, os.getpid()), signature)
    ran = optimize(study, SPACE, int(trials), int(batch), synthetic_evaluator(float(sleep)), int(heartbeat),
                   f"worker-{os.getpid()}")  # fmt: skip
    print(f"ran {ran}", flush=True)


if __name__ == "__main__":
    main()
