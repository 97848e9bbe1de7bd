"""A sweep of S settings x K seeds on CartPole-v1 (RL-Zoo's A2C config: 8 envs x 5 steps per member):
one vmapped a2c_jax program (split over the CPU's cores as `a2c-jax sweep` does; `--one-device`: not)
vs a sequential loop of a2c_jax runs (compiled once, hyperparameters passed in) vs sequential
Stable-Baselines3 runs (one run measured, multiplied). Also the population program's speed against
population size, and one agent with `--agent-envs` envs on one device for comparison.

    python -m benchmarks.sweep_population [--settings 64] [--seeds 4] [--steps 100000] [--no-sb3] [--one-device]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.cli import cpu_device_per_core
from a2c_jax.config import HParams, preset
from a2c_jax.core.train import make_train
from a2c_jax.runs.distributed import POP, population_layout
from benchmarks.common import write_result


def population_hparams(size: int, seed: int = 0) -> HParams:
    """`size` members with log-uniform lr in [1e-4, 3e-3] and ent_coef in {0, 0.01} (speed does not depend on them)."""
    rng = np.random.default_rng(seed)
    base = HParams().as_arrays()
    hp = jax.tree.map(lambda x: jnp.full((size,), x, jnp.float32), base)
    lr = jnp.asarray(np.exp(rng.uniform(np.log(1e-4), np.log(3e-3), size)), jnp.float32)
    ent = jnp.asarray(rng.choice([0.0, 0.01], size), jnp.float32)
    return hp._replace(lr=lr, ent_coef=ent)


def time_population(train, size: int, num_envs: int) -> tuple[float, float]:
    """(compile seconds, run seconds) of jit(vmap(train)) over `size` members, split over the devices
    as `a2c-jax sweep` splits them by default (`distributed.population_layout`)."""
    hps = population_hparams(size)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(size))
    layout = population_layout(None, num_envs, size)
    shardings = {} if layout is None else {"in_shardings": layout.sharding(POP), "out_shardings": layout.sharding(POP)}
    t = time.perf_counter()
    compiled = jax.jit(jax.vmap(train), **shardings).lower(keys, hps).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(compiled(keys, hps))
    return compile_s, time.perf_counter() - t


def time_sequential(train, size: int) -> tuple[float, float]:
    """(compile seconds, run seconds) of `size` runs of one compiled single-agent program."""
    hps = population_hparams(size)
    one = jax.tree.map(lambda x: x[0], hps)
    t = time.perf_counter()
    compiled = jax.jit(train).lower(jax.random.PRNGKey(0), one).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(size):
        jax.block_until_ready(compiled(jax.random.PRNGKey(i), jax.tree.map(lambda x, i=i: x[i], hps)))
    return compile_s, time.perf_counter() - t


def time_sb3(steps: int) -> dict:
    """Wall-clock of one SB3 A2C run with the zoo CartPole config (8 envs, SB3 defaults)."""
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    env = make_vec_env("CartPole-v1", n_envs=8, seed=0)
    model = A2C("MlpPolicy", env, seed=0, device="cpu", verbose=0)
    t = time.perf_counter()
    model.learn(total_timesteps=steps)
    import stable_baselines3

    return {"seconds": time.perf_counter() - t, "sb3": stable_baselines3.__version__, "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per member")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 4, 16, 64])
    parser.add_argument("--no-sb3", action="store_true")
    parser.add_argument("--name", default="cpu-sweep-population")
    parser.add_argument("--one-device", action="store_true", help="do not split populations over the CPU's cores")
    parser.add_argument("--agent-envs", type=int, default=512, help="envs of the one agent compared")
    args = parser.parse_args()
    if not args.one_device:
        cpu_device_per_core()  # what `a2c-jax sweep` does; XLA reads the flag when its backend starts
    config, _ = preset("zoo", "CartPole-v1")
    config = dataclasses.replace(config, total_timesteps=args.steps)
    train = make_train(config)
    size = args.settings * args.seeds
    steps = config.num_updates * config.batch_size

    agent = dataclasses.replace(config, num_envs=args.agent_envs, total_timesteps=args.steps * 8)
    agent_compile, agent_run = time_population(make_train(agent), 1, agent.num_envs)
    agent_rate = agent.num_updates * agent.batch_size / agent_run
    print(f"one agent x {agent.num_envs} envs: {agent_rate:12,.0f} env steps/s (one device, as `a2c-jax train`)")
    pop_compile, pop_run = time_population(train, size, config.num_envs)
    print(f"population of {size}: compile {pop_compile:.1f}s, run {pop_run:.1f}s")
    seq_compile, seq_run = time_sequential(train, size)
    print(f"sequential {size} runs: compile {seq_compile:.1f}s, run {seq_run:.1f}s")
    scaling = []
    for p in args.sizes:
        c, r = time_population(train, p, config.num_envs)
        scaling.append({"population": p, "compile_seconds": c, "run_seconds": r,
                        "env_steps_per_second": p * steps / r, "seconds_per_member": r / p})  # fmt: skip
        print(f"population {p:4d}: {p * steps / r:12,.0f} env steps/s")
    result = {
        "benchmark": "sweep_population",
        "env_id": "CartPole-v1",
        "config": dataclasses.asdict(config),
        "members": size,
        "env_steps_per_member": steps,
        "population": {"compile_seconds": pop_compile, "run_seconds": pop_run, "total_seconds": pop_compile + pop_run},
        "sequential_a2c_jax": {
            "compile_seconds": seq_compile,
            "run_seconds": seq_run,
            "total_seconds": seq_compile + seq_run,
        },
        "speedup_vs_sequential_a2c_jax": (seq_compile + seq_run) / (pop_compile + pop_run),
        "population_devices": jax.local_device_count(),
        "scaling": scaling,
        "one_agent": {"num_envs": agent.num_envs, "compile_seconds": agent_compile, "env_steps_per_second": agent_rate},
        "population_64_vs_one_agent": next((r["env_steps_per_second"] for r in scaling if r["population"] == 64), 0)
        / agent_rate,
    }
    if not args.no_sb3:
        sb3 = time_sb3(steps)
        sb3["total_seconds_estimate"] = sb3["seconds"] * size
        result["sequential_sb3"] = sb3
        result["speedup_vs_sequential_sb3"] = sb3["total_seconds_estimate"] / (pop_compile + pop_run)
        print(f"SB3 one run {sb3['seconds']:.1f}s -> {size} runs ~{sb3['total_seconds_estimate']:.0f}s")
    print(f"speedup vs sequential a2c_jax: {result['speedup_vs_sequential_a2c_jax']:.2f}x")
    if "speedup_vs_sequential_sb3" in result:
        print(f"speedup vs sequential SB3: {result['speedup_vs_sequential_sb3']:.0f}x")
    print(f"wrote {write_result(args.name, result)}")


if __name__ == "__main__":
    main()
