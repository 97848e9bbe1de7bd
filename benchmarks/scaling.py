"""Training throughput against the device count: one agent whose envs are sharded over the devices,
and a population whose members are sharded over them.

Each device count runs in its own process (the count is fixed when JAX starts). On a CPU the devices
are forced host devices (XLA_FLAGS=--xla_force_host_platform_device_count=D) that share the same
cores, so the figures show the cost and benefit of partitioning, not more hardware; on a machine with
several GPUs the same script measures the real thing (`--real`).

    python -m benchmarks.scaling [--devices 1 2 4] [--envs 1024] [--population 64] [--pop-envs 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

RESULT = "SCALING "


def agent_rate(envs: int, devices: int, seconds: float) -> dict:
    """Steps/s of one agent (SB3's CartPole settings) whose env axis is sharded over `devices`
    devices, in chunks of the host loop's compiled program, as `a2c-jax train --devices` runs."""
    import jax
    import jax.numpy as jnp

    from a2c_jax.config import preset
    from a2c_jax.core.train import build_agent, init_state
    from a2c_jax.runs.distributed import make_layout, state_shardings
    from a2c_jax.runs.runner import abstract_state, compile_chunk

    config, hparams = preset("sb3", "CartPole-v1")
    hp = hparams.as_arrays()
    chunk = 50
    config = dataclasses.replace(config, num_envs=envs, total_timesteps=envs * config.num_steps * chunk)
    agent = build_agent(config)
    layout = make_layout(devices, envs) if devices > 1 else None
    shardings = state_shardings(abstract_state(agent), layout) if layout else None
    state = jax.jit(init_state, static_argnums=0, out_shardings=shardings)(agent, hp, jax.random.PRNGKey(0))
    t = time.perf_counter()
    program = compile_chunk(agent, chunk, layout)
    compile_s = time.perf_counter() - t
    state, _ = jax.block_until_ready(program(state, hp, jnp.int32(chunk)))
    reps, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds or reps < 2:
        state, _ = jax.block_until_ready(program(state, hp, jnp.int32(chunk)))
        reps += 1
    wall = time.perf_counter() - t
    return {"num_envs": envs, "steps_per_second": reps * chunk * config.batch_size / wall, "compile": compile_s}


def measure(devices: int, envs: int, population: int, pop_envs: int, seconds: float) -> dict:
    """Steps/s of one agent (envs sharded) and of a population (members sharded) on `devices` devices."""
    import jax
    import jax.numpy as jnp

    from a2c_jax.config import preset
    from a2c_jax.core.train import build_agent
    from a2c_jax.population.sweep import population_program
    from a2c_jax.runs.distributed import layout_for

    config, hparams = preset("sb3", "CartPole-v1")
    hp = hparams.as_arrays()
    out: dict = {"devices": devices, "visible": jax.device_count()}
    out["agent"] = agent_rate(envs, devices, seconds)

    # a population: P members x pop_envs envs, the members sharded over the devices
    member = dataclasses.replace(config, num_envs=pop_envs, total_timesteps=pop_envs * config.num_steps * 400)
    layout = layout_for(str(devices), pop_envs, population)
    run = population_program(build_agent(member), 2, layout)
    seeds = jnp.arange(population, dtype=jnp.int32)
    hps = jax.tree.map(lambda x: jnp.full((population,), x, jnp.float32), hp)
    t = time.perf_counter()
    compiled = run.lower(seeds, hps).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(seeds, hps))
    reps, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds or reps < 2:
        jax.block_until_ready(compiled(seeds + reps, hps))
        reps += 1
    wall = time.perf_counter() - t
    steps = population * member.num_updates * member.batch_size
    out["population"] = {
        "members": population,
        "envs_per_member": pop_envs,
        "mesh": [layout.pop_devices, layout.env_devices] if layout else [1, 1],
        "steps_per_second": reps * steps / wall,
        "compile": compile_s,
        "note": "includes each member's final 2-episode evaluation",
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--envs", type=int, default=1024)
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--pop-envs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--real", action="store_true", help="use the machine's own devices (GPUs), no forcing")
    parser.add_argument("--name", default="cpu-scaling")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(RESULT + json.dumps(measure(args.worker, args.envs, args.population, args.pop_envs, args.seconds)))
        return
    rows = []
    for d in args.devices:
        env = dict(os.environ)
        if not args.real:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={d}".strip()
        argv = [sys.executable, "-m", "benchmarks.scaling", "--worker", str(d), "--envs", str(args.envs)]
        argv += ["--population", str(args.population), "--pop-envs", str(args.pop_envs), "--seconds", str(args.seconds)]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"devices={d} failed:\n{proc.stderr[-3000:]}")
        row = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith(RESULT))[len(RESULT) :])
        rows.append(row)
        print(
            f"{d} device(s): one agent x {args.envs} envs {row['agent']['steps_per_second']:12,.0f} steps/s | "
            f"population {args.population} x {args.pop_envs} envs (mesh {row['population']['mesh']}) "
            f"{row['population']['steps_per_second']:12,.0f} steps/s",
            flush=True,
        )
    from benchmarks.common import write_result

    payload = {"benchmark": "scaling", "forced_host_devices": not args.real, "rows": rows}
    print(f"wrote {write_result(args.name, payload)}")


if __name__ == "__main__":
    main()
