"""Start-up as a user meets it: whole-process wall times of the CLI, and where the imports go.

Each command runs in a fresh process from an empty working directory:

- `a2c-jax --help` and `a2c-jax train --help`;
- `a2c-jax train` (defaults: CartPole-v1, 300k steps) with an empty compilation cache ("cold", a new
  cache per repeat) and again with the cache that run filled ("warm"); the run's own summary gives
  the compile and training seconds inside it;
- `python -X importtime` of `import a2c_jax.cli` (what `--help` pays) and of the training path
  (`a2c_jax.runs.runner`), reduced to the heavy packages.

`--compare DIR` also measures another checkout (e.g. the commit before a change), each repeat
alternating which goes first, so a before/after comparison runs side by side in one run ("before" in
the JSON); `--pythonpath DIR` measures another checkout instead of this one.

    python -m benchmarks.startup [--repeats 3] [--name cpu-startup] [--pythonpath DIR] [--compare DIR]
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


def commit_of(source: Path) -> str:
    """The short commit of the checkout at `source`, marked when it has uncommitted changes."""
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return commit.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def measure_round(root: Path, label: str, pythonpath: str | None, r: int) -> dict[str, Any]:
    """One repeat of every command for one checkout: help, train help, train cold, then train warm (the
    cache the cold run filled)."""
    env = _env(pythonpath, root / f"unused-cache-{label}")
    out: dict[str, Any] = {}
    for name, argv in (("help", ["--help"]), ("train_help", ["train", "--help"])):
        out[name] = timed([sys.executable, "-c", CLI, *argv], root, env)
    env = _env(pythonpath, root / f"cache-{label}-{r}")
    inside = []
    for temperature in ("cold", "warm"):
        run_dir = root / f"run-{label}-{r}-{temperature}"
        out[f"train_{temperature}"] = timed([sys.executable, "-c", CLI, "train", "--run-dir", str(run_dir)], root, env)
        info = json.loads((run_dir / "summary.json").read_text())
        inside.append({"label": temperature, **{k: info.get(k) for k in ("compile_seconds", "wall_seconds")}})
    out["train_inside"] = inside
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="cpu-startup")
    parser.add_argument("--pythonpath", default=None, help="measure the a2c_jax found in this directory")
    parser.add_argument("--compare", default=None, help="also measure this checkout, interleaved (label 'before')")
    args = parser.parse_args()
    source = Path(args.pythonpath) if args.pythonpath else Path(__file__).resolve().parent.parent
    sides = {"now": args.pythonpath} | ({"before": args.compare} if args.compare else {})
    rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in sides}
    with tempfile.TemporaryDirectory(prefix="a2c-startup-") as tmp:
        root = Path(tmp)
        for r in range(args.repeats):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]  # alternate who goes first
            for label in order:
                rounds[label].append(measure_round(root, label, sides[label], r))
                got = rounds[label][-1]
                print(f"{label}: help {got['help']:.2f} s, train cold {got['train_cold']:.2f} s, "
                      f"warm {got['train_warm']:.2f} s", flush=True)  # fmt: skip
        results: dict[str, Any] = {}
        for label, path in sides.items():
            side: dict[str, Any] = {"commit": commit_of(Path(path) if path else source)}
            for key in ("help", "train_help", "train_cold", "train_warm"):
                side[key] = summary([got[key] for got in rounds[label]])
            side["train_inside"] = [row for got in rounds[label] for row in got["train_inside"]]
            env = _env(path, None)
            side["import_cli"] = import_breakdown("import a2c_jax.cli", root, env)
            side["import_train_path"] = import_breakdown("import a2c_jax.cli, a2c_jax.runs.runner", root, env)
            results[label] = side
    payload = {"benchmark": "startup", "repeats": args.repeats, "interleaved": bool(args.compare)}
    path = write_result(
        args.name, {**payload, "results": results["now"], **({"before": results["before"]} if args.compare else {})}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
