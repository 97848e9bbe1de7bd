"""Side-by-side A/B pairs behind this round's speed changes, each side a fresh process:

- the CPU's Threefry lowering: one agent, SB3's CartPole settings at 8 envs, written out (default) vs
  JAX's own loop (A2C_JAX_ROLLED_THREEFRY=1);
- populations: 64 members x 8 envs on one CPU device vs split over one device per core.

    python -m benchmarks.ab [--repeats 2] [--name cpu-ab]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks.common import write_result

WORKER = """
import dataclasses, json, sys, time
import jax, jax.numpy as jnp
from a2c_jax.config import preset
from a2c_jax.runs.distributed import POP, population_layout
from a2c_jax.core.train import make_train
from benchmarks.sweep_population import population_hparams
pop, envs, steps = map(int, sys.argv[1:4])
config, hp = preset("sb3", "CartPole-v1")
config = dataclasses.replace(config, num_envs=envs, total_timesteps=steps)
train = make_train(config)
if pop == 1:
    program, args = jax.jit(train), (jax.random.PRNGKey(0), hp)
else:
    layout = population_layout(None, envs, pop)
    shard = {} if layout is None else {"in_shardings": layout.sharding(POP), "out_shardings": layout.sharding(POP)}
    program = jax.jit(jax.vmap(train), **shard)
    args = (jax.vmap(jax.random.PRNGKey)(jnp.arange(pop)), population_hparams(pop))
compiled = program.lower(*args).compile()
jax.block_until_ready(compiled(*args))
best = 0.0
for _ in range(3):
    t = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    best = max(best, pop * config.num_updates * config.batch_size / (time.perf_counter() - t))
print("AB " + json.dumps({"steps_per_second": best, "devices": jax.local_device_count()}))
"""

CASES = {
    "threefry_written_out_8_envs": ({}, ["1", "8", "200000"]),
    "threefry_jax_loop_8_envs": ({"A2C_JAX_ROLLED_THREEFRY": "1"}, ["1", "8", "200000"]),
    "population_64x8_one_device": ({"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}, ["64", "8", "40000"]),
    "population_64x8_one_device_per_core": ({"XLA_FLAGS": f"--xla_force_host_platform_device_count={os.cpu_count()}"},
                                            ["64", "8", "40000"]),
}  # fmt: skip


def run_case(extra: dict[str, str], argv: list[str]) -> dict:
    env = {**os.environ, **extra}
    out = subprocess.run([sys.executable, "-c", WORKER, *argv], env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("AB "))[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds over the cases")
    parser.add_argument("--name", default="cpu-ab")
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, (extra, argv) in CASES.items():
            rows[name].append(run_case(extra, argv))
            print(name, f"{rows[name][-1]['steps_per_second']:,.0f} steps/s", flush=True)
    print(f"wrote {write_result(args.name, {'benchmark': 'ab', 'rows': rows})}")


if __name__ == "__main__":
    main()
