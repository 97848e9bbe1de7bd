"""Why the first call of a compiled training chunk is slower than the next ones.

Each case runs in a fresh process (the cost is paid once per process):

- `chunk`: the default preset's compiled chunk called with 0 updates, then 1, 1 and 20 (the first
  call and the first that runs an update both pay); `chunk_from_cache` the same with the program
  loaded from JAX's persistent compilation cache, as a warm start does;
- `dot_tn`: one jitted `x.T @ y` ([8, 64] x [8, 64] -> [64, 64], the weight gradient's shape in the
  backward pass) called three times; then a second program of another shape: only the process's first
  such dot pays;
- `dot_nn`: `y @ w` ([8, 64] x [64, 64], the forward pass) the same way.

What is paid (found with `perf record`): on the first call of a dot whose left operand is transposed,
XLA:CPU's matrix multiply enters oneDNN's f32 GEMM, which generates its kernels with its JIT (Xbyak)
once per process. It is XLA's, not this library's; warming it up earlier would only move the time.

    python -m benchmarks.first_call [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks.common import write_result

CALLS = """
import json, time, jax, jax.numpy as jnp
def calls(f, *args):
    times = []
    for _ in range(3):
        t = time.perf_counter(); jax.block_until_ready(f(*args)); times.append(time.perf_counter() - t)
    return times
"""
"""Shared by the dot cases: three timed calls of a compiled function."""

CASES = {
    "chunk": """
import json, os, time, jax, jax.numpy as jnp
if os.environ.get("FIRST_CALL_CACHE"):  # the chunk loaded from JAX's persistent cache (a warm start)
    jax.config.update("jax_compilation_cache_dir", os.environ["FIRST_CALL_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
from a2c_jax.config import preset
from a2c_jax.core.train import build_agent, init_state
from a2c_jax.runs.runner import compile_chunk
from a2c_jax.runs.process import configure_process
configure_process()
config, hp = preset("default")
agent = build_agent(config)
run = compile_chunk(agent, 20)
state = jax.jit(init_state, static_argnums=0)(agent, hp, jax.random.PRNGKey(0))
jax.block_until_ready(state)
hp = hp.as_arrays()
out = {}
for label, n in (("n0", 0), ("first_n1", 1), ("second_n1", 1), ("n20", 20)):
    t = time.perf_counter()
    state, metrics = run(state, hp, jnp.int32(n))
    jax.block_until_ready((state, metrics))
    out[label] = time.perf_counter() - t
print(json.dumps(out))
""",
    "dot_tn": CALLS
    + """
x = jnp.ones((8, 64)); y = jnp.ones((8, 64)); z = jnp.ones((16, 64))
first = jax.jit(lambda a, b: a.T @ b).lower(x, y).compile()
other = jax.jit(lambda a, b: a.T @ b).lower(z, z).compile()
a = calls(first, x, y); b = calls(other, z, z)
print(json.dumps({"first_call": a[0], "later_calls": a[1:], "another_shape_first_call": b[0]}))
""",
    "dot_nn": CALLS
    + """
y = jnp.ones((8, 64)); w = jnp.ones((64, 64))
f = jax.jit(lambda a, b: a @ b).lower(y, w).compile()
a = calls(f, y, w)
print(json.dumps({"first_call": a[0], "later_calls": a[1:]}))
""",
}


def run_case(code: str, cache: str | None = None) -> dict[str, Any]:
    env = {**os.environ, **({"FIRST_CALL_CACHE": cache} if cache else {})}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="cpu-first-call")
    args = parser.parse_args()
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in [*CASES, "chunk_from_cache"]}
    for _ in range(args.repeats):
        for name, code in CASES.items():
            rows[name].append(run_case(code))
            print(name, {k: round(v * 1e3, 2) for k, v in rows[name][-1].items() if not isinstance(v, list)})
        with tempfile.TemporaryDirectory() as cache:
            run_case(CASES["chunk"], cache)  # fills the cache
            name = "chunk_from_cache"
            rows[name].append(run_case(CASES["chunk"], cache))
            print(name, {k: round(v * 1e3, 2) for k, v in rows[name][-1].items() if not isinstance(v, list)})
    medians = {
        name: {
            key: statistics.median(row[key] for row in got) * 1e3 for key in got[0] if not isinstance(got[0][key], list)
        }
        for name, got in rows.items()
    }
    path = write_result(args.name, {"benchmark": "first_call", "unit": "ms (medians)", "medians": medians,
                                    "repeats": args.repeats, "rows_seconds": rows})  # fmt: skip
    print(json.dumps(medians, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
