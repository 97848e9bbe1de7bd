"""Start-up as a user meets it: whole-process wall times of the CLI, and where the imports go.

Each command runs in a fresh process from an empty working directory:

- `a2c-jax --help` and `a2c-jax train --help`;
- `a2c-jax train` (defaults: CartPole-v1, 300k steps) with an empty compilation cache ("cold", a new
  cache per repeat) and again with the cache that run filled ("warm"); the run's own summary gives
  the compile and training seconds inside it;
- `python -X importtime` of `import a2c_jax.cli` (what `--help` pays) and of the training path
  (`a2c_jax.runs.runner`), reduced to the heavy packages.

`--pythonpath DIR` measures another checkout (e.g. the commit before a change) the same way, so a
before/after comparison runs side by side on one machine.

    python -m benchmarks.startup [--repeats 3] [--name cpu-startup] [--pythonpath DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_result

HEAVY = (
    "jax", "jaxlib", "flax", "optax", "orbax", "chex", "gymnax", "matplotlib", "scipy", "seaborn", "pandas",
    "numpy", "tyro", "rich", "a2c_jax.cli", "a2c_jax.runs.runner", "a2c_jax.config", "a2c_jax.envs",
    "a2c_jax.runs.plots", "a2c_jax.runs.checkpoint",
)  # fmt: skip
CLI = "import sys; from a2c_jax.cli import run; sys.argv[0] = 'a2c-jax'; run()"


def _env(pythonpath: str | None, cache: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    if cache is not None:
        env["A2C_JAX_CACHE_DIR"] = str(cache)
    return env


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds for one whole process (raises if it fails)."""
    start = time.perf_counter()
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return wall


def import_breakdown(statement: str, cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Cumulative import seconds of each heavy package that `statement` imports, and the total."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    times: dict[str, float] = {}
    total = 0.0
    for line in out.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)", line)
        if not match:
            continue
        cumulative, depth, name = int(match[1]) / 1e6, len(match[2]), match[3]
        if name in HEAVY:
            times[name] = max(times.get(name, 0.0), cumulative)
        if depth == 1:
            total += cumulative
    return {"total": total, **dict(sorted(times.items(), key=lambda kv: -kv[1]))}


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "all": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="cpu-startup")
    parser.add_argument("--pythonpath", default=None, help="measure the a2c_jax found in this directory")
    args = parser.parse_args()
    source = Path(args.pythonpath) if args.pythonpath else Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    results: dict[str, Any] = {"commit": commit.stdout.strip() + (" (with uncommitted changes)" if dirty else "")}
    with tempfile.TemporaryDirectory(prefix="a2c-startup-") as tmp:
        root = Path(tmp)
        env = _env(args.pythonpath, root / "unused-cache")
        for name, argv in (("help", ["--help"]), ("train_help", ["train", "--help"])):
            results[name] = summary([timed([sys.executable, "-c", CLI, *argv], root, env) for _ in range(args.repeats)])
            print(f"{name}: {results[name]['median']:.2f} s", flush=True)
        cold, warm, inside = [], [], []
        for r in range(args.repeats):
            cache = root / f"cache-{r}"
            env = _env(args.pythonpath, cache)
            for label, runs in (("cold", cold), ("warm", warm)):
                run_dir = root / f"run-{r}-{label}"
                runs.append(timed([sys.executable, "-c", CLI, "train", "--run-dir", str(run_dir)], root, env))
                info = json.loads((run_dir / "summary.json").read_text())
                inside.append({"label": label, **{k: info.get(k) for k in ("compile_seconds", "wall_seconds")}})
            print(f"train cold {cold[-1]:.2f} s, warm {warm[-1]:.2f} s", flush=True)
        results["train_cold"] = summary(cold)
        results["train_warm"] = summary(warm)
        results["train_inside"] = inside
        env = _env(args.pythonpath, None)
        results["import_cli"] = import_breakdown("import a2c_jax.cli", root, env)
        results["import_train_path"] = import_breakdown("import a2c_jax.cli, a2c_jax.runs.runner", root, env)
    path = write_result(args.name, {"benchmark": "startup", "repeats": args.repeats, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
