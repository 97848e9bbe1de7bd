"""Milliseconds per call of an env family's raw reset and step (jitted, vmapped over N envs; no
learning): where an env's time goes before any training. Brax's backends, and Craftax's reset (a whole
new world) against its step. Results: benchmarks/results/<name>.json.

    python -m benchmarks.env_step --env-ids craftax:Craftax-Classic-Symbolic-v1 brax:hopper@spring --envs 64
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from a2c_jax.envs import make_env
from benchmarks.common import write_result


def per_call(fn, args: tuple, repeats: int) -> tuple[float, float]:
    """(compile seconds, mean seconds per call over `repeats` calls after one warm call)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(compiled(*args))
    return compile_s, (time.perf_counter() - start) / repeats


def measure(env_id: str, num_envs: int, repeats: int) -> dict:
    """One row: the env's batched reset and step (each env given the zero action)."""
    env, params, spec = make_env(env_id)
    batched = getattr(env, "batched", False)
    reset = env.reset if batched else jax.vmap(env.reset, in_axes=(0, None))
    step = env.step if batched else jax.vmap(env.step, in_axes=(0, 0, 0, None))
    # the inner env's own step, without any auto-reset, where the adapter wraps one
    inner = getattr(env, "env", None)
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    _, states = reset(keys, params)
    shape = (num_envs,) if spec.action_kind == "discrete" else (num_envs, spec.action_dim)
    actions = jnp.zeros(shape, jnp.int32 if spec.action_kind == "discrete" else jnp.float32)
    reset_compile, reset_s = per_call(lambda k: reset(k, params), (keys,), repeats)
    step_compile, step_s = per_call(lambda k, s, a: step(k, s, a, params), (keys, states, actions), repeats)
    row = {
        "env_id": env_id, "num_envs": num_envs, "reset_ms": reset_s * 1e3, "step_ms": step_s * 1e3,
        "steps_per_second": num_envs / step_s, "reset_compile_seconds": reset_compile,
        "step_compile_seconds": step_compile,
    }  # fmt: skip
    if inner is not None and hasattr(inner, "step"):
        raw = jax.vmap(inner.step, in_axes=(0, 0, 0, None))
        _, raw_s = per_call(lambda k, s, a: raw(k, s, a, params), (keys, states, actions), repeats)
        row["step_without_reset_ms"] = raw_s * 1e3
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-ids", nargs="+", required=True)
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--name", default="cpu-env-step")
    args = parser.parse_args()
    rows = []
    for env_id in args.env_ids:
        rows.append(measure(env_id, args.envs, args.repeats))
        r = rows[-1]
        extra = f", without its auto-reset {r['step_without_reset_ms']:.2f} ms" if "step_without_reset_ms" in r else ""
        print(f"{env_id} x {args.envs}: reset {r['reset_ms']:.2f} ms, step {r['step_ms']:.2f} ms{extra}", flush=True)
        write_result(args.name, {"benchmark": "env_step", "rows": rows})


if __name__ == "__main__":
    main()
