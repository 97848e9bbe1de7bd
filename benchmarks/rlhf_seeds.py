"""`a2c-jax rlhf` with its defaults, as a user runs it, once per seed: wall time of the whole process
(compile included, compilation cache off, stages not cached) and the gold reward of the policy
against the reference's on the same held-out prompts, with a 95% t-interval over seeds.

    python -m benchmarks.rlhf_seeds [--seeds 0 1 2 3 4] [--name cpu-rlhf-seeds]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_result

# two-sided 97.5% quantiles of Student's t for 1..29 degrees of freedom
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131]
T975 += [2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045]


def interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95% t-interval of the mean."""
    mean = statistics.fmean(values)
    half = T975[len(values) - 2] * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--name", default="cpu-rlhf-seeds")
    parser.add_argument("extra", nargs="*", help="more `a2c-jax rlhf` flags (after --)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            out = Path(tmp) / f"seed{seed}"
            command = [sys.executable, "-m", "a2c_jax.cli", "rlhf", "--seed", str(seed), "--out", str(out)]
            command += ["--stage-dir", str(Path(tmp) / f"stages{seed}"), "--quiet", "--no-compile-cache", *args.extra]
            start = time.perf_counter()
            subprocess.run(command, check=True, timeout=1800)
            wall = time.perf_counter() - start
            summary = json.loads((out / "summary.json").read_text())
            member = summary["members"][0]
            row = {
                "seed": seed,
                "wall_seconds": wall,
                "reference_gold": member["reference"]["gold"],
                "policy_gold": member["final"]["gold"],
                "gold_gain": member["gold_gain"],
                "reference_score": member["reference"]["score"],
                "policy_score": member["final"]["score"],
                "kl_k1": member["final"]["k1"],
                "length": member["final"]["length"],
                "rm_held_out_label_accuracy": summary["reward_model_stage"]["held_out_label_accuracy"],
                "rm_held_out_gold_accuracy": summary["reward_model_stage"]["held_out_gold_accuracy"],
                "seconds": summary["seconds"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    gain = interval([r["gold_gain"] for r in rows])
    wall = [r["wall_seconds"] for r in rows]
    payload = {
        "benchmark": "rlhf_seeds",
        "command": "a2c-jax rlhf --seed S " + " ".join(args.extra),
        "rows": rows,
        "gold_gain_mean_ci95": gain,
        "wall_seconds_max": max(wall),
        "wall_seconds_mean": statistics.fmean(wall),
    }
    mean_wall = statistics.fmean(wall)
    print(f"gold gain {gain[0]:.2f} [{gain[1]:.2f}, {gain[2]:.2f}]; wall {mean_wall:.0f} s (max {max(wall):.0f})")
    print(f"wrote {write_result(args.name, payload)}")


if __name__ == "__main__":
    main()
