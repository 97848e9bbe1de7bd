"""Wall-clock of `a2c-jax train` with no arguments (CartPole-v1, the default preset), per seed.

Each seed runs as a fresh process, as a user would start it, with the persistent compilation
cache off (cold) and then on with a warm cache. Records the process wall-clock, the run's own
timings and the greedy evaluation return.

    python -m benchmarks.solve_cartpole [--seeds 0 1 ... 9]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_result

CLI = str(Path(sys.executable).with_name("a2c-jax"))


def run_once(seed: int, workdir: Path, cache: str | None) -> dict:
    run_dir = workdir / f"seed{seed}-{'warm' if cache else 'cold'}"
    env = dict(os.environ)
    flags = ["--no-compile-cache"]
    if cache:
        env["A2C_JAX_CACHE_DIR"] = cache
        flags = []
    t = time.perf_counter()
    proc = subprocess.run(
        [CLI, "train", "--seed", str(seed), "--quiet", "--run-dir", str(run_dir), *flags],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - t
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "seed": seed,
        "process_seconds": wall,
        "run_wall_seconds": summary["wall_seconds"],
        "compile_seconds": summary["compile_seconds"],
        "steps_per_second": summary["steps_per_second"],
        "eval_return_mean": summary["eval_return_mean"],
        "solved": summary["eval_return_mean"] >= 475,
        "stdout_tail": proc.stdout.strip().splitlines()[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cold = [run_once(s, work, None) for s in args.seeds]
        cache = str(work / "cache")
        (work / "prime").mkdir()
        run_once(args.seeds[0], work / "prime", cache)  # fills the cache once
        warm = [run_once(s, work, cache) for s in args.seeds]
    for label, rows in (("cold", cold), ("warm cache", warm)):
        secs = sorted(r["process_seconds"] for r in rows)
        print(
            f"{label}: solved {sum(r['solved'] for r in rows)}/{len(rows)}, process wall median "
            f"{secs[len(secs) // 2]:.1f}s, max {secs[-1]:.1f}s"
        )
    path = write_result("cpu-solve-cartpole-default", {"benchmark": "solve_cartpole", "cold": cold, "warm": warm})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
