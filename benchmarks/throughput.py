"""Training throughput of a2c_jax on CartPole-v1 against the number of environments.

Full training (rollout, values, GAE, loss, gradient, RMSprop), SB3's A2C settings (n_steps 5,
[64, 64] tanh actor and critic), one agent. Compile time is measured separately (AOT compile).

    python -m benchmarks.throughput [--envs 8 64 1024 8192] [--seconds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax

from a2c_jax.config import preset
from a2c_jax.train import make_train
from benchmarks.common import write_result


def measure(num_envs: int, seconds: float, num_steps: int = 5) -> dict:
    """Compile once for a short run to estimate speed, then time a run of about `seconds`."""
    config, hparams = preset("sb3", "CartPole-v1")
    probe = dataclasses.replace(
        config, num_envs=num_envs, num_steps=num_steps, total_timesteps=num_envs * num_steps * 20
    )
    run = jax.jit(make_train(probe)).lower(jax.random.PRNGKey(0), hparams).compile()
    t = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(0), hparams))
    rate = probe.total_timesteps / (time.perf_counter() - t)
    updates = max(20, int(rate * seconds / probe.batch_size))
    timed = dataclasses.replace(probe, total_timesteps=updates * probe.batch_size)
    t = time.perf_counter()
    compiled = jax.jit(make_train(timed)).lower(jax.random.PRNGKey(0), hparams).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(jax.random.PRNGKey(1), hparams))  # warm caches
    t = time.perf_counter()
    jax.block_until_ready(compiled(jax.random.PRNGKey(2), hparams))
    wall = time.perf_counter() - t
    steps = timed.total_timesteps
    return {
        "num_envs": num_envs,
        "num_steps": num_steps,
        "env_steps": steps,
        "seconds": wall,
        "steps_per_second": steps / wall,
        "compile_seconds": compile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 64, 1024, 8192])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--name", default="cpu-throughput")
    args = parser.parse_args()
    rows = []
    for n in args.envs:
        row = measure(n, args.seconds)
        rows.append(row)
        print(f"n_envs {n:6d}: {row['steps_per_second']:12,.0f} steps/s, compile {row['compile_seconds']:.1f}s")
    path = write_result(args.name, {"benchmark": "throughput", "env_id": "CartPole-v1", "preset": "sb3", "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
