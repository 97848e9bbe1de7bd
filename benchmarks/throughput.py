"""Training throughput of a2c_jax against the number of environments.

Full training (rollout, values, GAE, loss, gradient, optimizer), one agent; by default CartPole-v1
with SB3's A2C settings (n_steps 5, [64, 64] tanh actor and critic), in the compiled chunks of the
`a2c-jax train` host loop. Each row compiles once, warms up, and reports the median of `--repeats`
timed runs with their range; the compile time separately. Other envs, presets and networks:

    python -m benchmarks.throughput [--envs 8 64 1024 8192] [--seconds 3]
    python -m benchmarks.throughput --env-ids Breakout-MinAtar Asterix-MinAtar --preset default --envs 64 \\
        --name cpu-throughput-minatar
    python -m benchmarks.throughput --network gru --envs 8 64 1024 --name cpu-throughput-gru
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from a2c_jax.config import A2CConfig, HParams, Network, choices, preset
from a2c_jax.core.train import build_agent, init_state
from a2c_jax.runs.distributed import make_layout, state_shardings
from a2c_jax.runs.runner import abstract_state, compile_chunk
from benchmarks.common import write_result
from benchmarks.timing import Contender, time_interleaved

MAX_CHUNK = 10_000  # updates per call at most: the program's metric buffer holds this many rows


def prepare_a2c_jax(config: A2CConfig, hparams: HParams, devices: int = 1) -> Callable[[int], None]:
    """Build and compile `config`'s agent once, as the host loop of `a2c-jax train` runs it (one
    program of up to MAX_CHUNK updates whose update count is an argument); returns `run(updates)`,
    which trains on from where the last call stopped and returns when the device is done. With
    `devices` > 1 the env axis is split over that many devices (`train --devices`)."""
    agent = build_agent(config)
    hp = hparams.as_arrays()
    layout = make_layout(devices, config.num_envs) if devices > 1 else None
    shardings = state_shardings(abstract_state(agent), layout) if layout else None
    state = jax.jit(init_state, static_argnums=0, out_shardings=shardings)(agent, hp, jax.random.PRNGKey(0))
    program = compile_chunk(agent, MAX_CHUNK, layout)
    box = [state]

    def run(updates: int) -> None:
        while updates > 0:
            n = min(updates, MAX_CHUNK)
            box[0], _ = program(box[0], hp, jnp.int32(n))
            updates -= n
        jax.block_until_ready(box[0])

    return run


def sized(
    num_envs: int,
    num_steps: int | None = None,
    env_id: str = "CartPole-v1",
    preset_name: str = "sb3",
    network: Network | None = None,
) -> tuple[A2CConfig, HParams]:
    """The preset's config and hyperparameters with the given env count (and steps and network)."""
    config, hparams = preset(preset_name, env_id)
    config = dataclasses.replace(
        config, network=network or config.network, num_envs=num_envs, num_steps=num_steps or config.num_steps
    )
    return config, hparams


def measure(
    num_envs: int,
    seconds: float,
    num_steps: int | None = None,
    env_id: str = "CartPole-v1",
    preset_name: str = "sb3",
    network: Network | None = None,
    repeats: int = 5,
) -> dict:
    """Compile once, warm up, then `repeats` timed runs of about `seconds` each: the median rate
    (`steps_per_second`) and its range; `compile_seconds` is the build, compile and first call."""
    config, hparams = sized(num_envs, num_steps, env_id, preset_name, network)
    stats = time_interleaved(
        [Contender("a2c_jax", lambda: prepare_a2c_jax(config, hparams), config.batch_size)], seconds, repeats
    )["a2c_jax"]
    if "error" in stats:
        raise RuntimeError(stats["error"])
    return {
        "env_id": env_id,
        "preset": preset_name,
        "network": config.network,
        "hidden_sizes": list(config.hidden_sizes),
        "num_envs": num_envs,
        "num_steps": config.num_steps,
        "steps_per_second": stats["median"],
        "steps_per_second_min": stats["min"],
        "steps_per_second_max": stats["max"],
        "repeats": len(stats["repeats"]),
        "updates_per_repeat": stats["updates_per_repeat"],
        "compile_seconds": stats["setup_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 64, 1024, 8192])
    parser.add_argument("--seconds", type=float, default=3.0, help="per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--env-ids", nargs="+", default=["CartPole-v1"])
    parser.add_argument("--preset", default="sb3")
    parser.add_argument("--network", choices=choices("network"), default=None, help="default: the preset's")
    parser.add_argument("--name", default="cpu-throughput")
    args = parser.parse_args()
    rows = []
    for env_id in args.env_ids:
        for n in args.envs:
            row = measure(
                n, args.seconds, env_id=env_id, preset_name=args.preset, network=args.network, repeats=args.repeats
            )
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
