"""Training throughput of a2c_jax against the number of environments.

Full training (rollout, values, GAE, loss, gradient, optimizer), one agent; by default CartPole-v1
with SB3's A2C settings (n_steps 5, [64, 64] tanh actor and critic). Compile time is measured
separately (AOT compile). Other envs, presets and networks:

    python -m benchmarks.throughput [--envs 8 64 1024 8192] [--seconds 3]
    python -m benchmarks.throughput --env-ids Breakout-MinAtar Asterix-MinAtar --preset default --envs 64 \\
        --name cpu-throughput-minatar
    python -m benchmarks.throughput --network gru --envs 8 64 1024 --name cpu-throughput-gru
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax

from a2c_jax.config import Network, choices, preset
from a2c_jax.core.train import make_train
from benchmarks.common import write_result


def measure(
    num_envs: int,
    seconds: float,
    num_steps: int | None = None,
    env_id: str = "CartPole-v1",
    preset_name: str = "sb3",
    network: Network | None = None,
) -> dict:
    """Compile once for a short run to estimate speed, then time a run of about `seconds`."""
    config, hparams = preset(preset_name, env_id)
    num_steps = num_steps or config.num_steps
    config = dataclasses.replace(config, network=network or config.network, num_envs=num_envs, num_steps=num_steps)
    probe = dataclasses.replace(config, total_timesteps=num_envs * num_steps * 20)
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
        "env_id": env_id,
        "preset": preset_name,
        "network": config.network,
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
    parser.add_argument("--env-ids", nargs="+", default=["CartPole-v1"])
    parser.add_argument("--preset", default="sb3")
    parser.add_argument("--network", choices=choices("network"), default=None, help="default: the preset's")
    parser.add_argument("--name", default="cpu-throughput")
    args = parser.parse_args()
    rows = []
    for env_id in args.env_ids:
        for n in args.envs:
            row = measure(n, args.seconds, env_id=env_id, preset_name=args.preset, network=args.network)
            rows.append(row)
            print(
                f"{env_id} ({row['network']}) n_envs {n:6d}: {row['steps_per_second']:12,.0f} steps/s, "
                f"compile {row['compile_seconds']:.1f}s",
                flush=True,
            )
            path = write_result(args.name, {"benchmark": "throughput", "preset": args.preset, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
