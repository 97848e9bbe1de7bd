"""One agent's whole training program, plain against vmapped over a member axis of size 1, on this CPU.

A finding, not yet used by the library: `jax.vmap` of `make_train(config)` over one member (the
program a population of one compiles to) ran 1.3-1.9x faster per env step than the plain program
on a 2-core CPU. The maths is the same; XLA compiles the batched dots (a batch dimension of 1) by
another path, so the results agree only to float32 rounding, which training then amplifies (the
parameters' largest difference after the run is recorded).

SB3's CartPole settings (n_steps 5, [64, 64] tanh actor and critic). Each row: both programs compiled
once and warmed up, then `--repeats` timed calls alternating which goes first; medians and ranges.

    python -m benchmarks.vmap_one [--envs 8 512 4096] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

import jax

from a2c_jax.config import preset
from a2c_jax.core.train import make_train
from a2c_jax.runs.process import configure_process
from benchmarks.common import write_result

ENV_STEPS = {8: 120_000, 512: 768_000, 4096: 2_048_000}
"""Env steps per timed call (a few hundred updates or more; about a second each)."""


def row(num_envs: int, env_steps: int, repeats: int) -> dict[str, Any]:
    config, hparams = preset("sb3", "CartPole-v1")
    config = dataclasses.replace(config, num_envs=num_envs, total_timesteps=env_steps)
    train, hp = make_train(config), hparams.as_arrays()
    key = jax.random.PRNGKey(0)
    one = (key[None], jax.tree.map(lambda x: x[None], hp))
    programs = {
        "plain": (jax.jit(train).lower(key, hp).compile(), (key, hp)),
        "vmap_of_one": (jax.jit(jax.vmap(train)).lower(*one).compile(), one),
    }
    outputs = {name: jax.block_until_ready(fn(*args)) for name, (fn, args) in programs.items()}  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in programs}
    for r in range(repeats):
        for name in list(programs) if r % 2 == 0 else list(programs)[::-1]:
            fn, args = programs[name]
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            seconds[name].append(time.perf_counter() - start)
    steps = config.num_updates * config.batch_size
    rates = {name: [steps / s for s in got] for name, got in seconds.items()}
    plain, batched = outputs["plain"][0].params, outputs["vmap_of_one"][0].params
    diff = max(
        float(abs(a - b[0]).max()) for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(batched), strict=True)
    )
    out: dict[str, Any] = {"num_envs": num_envs, "updates": config.num_updates, "env_steps": steps}
    for name, got in rates.items():
        out[name] = {"median": statistics.median(got), "min": min(got), "max": max(got), "repeats": got}
    out["speedup"] = out["vmap_of_one"]["median"] / out["plain"]["median"]
    out["max_param_difference_after_run"] = diff
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 512, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="cpu-vmap-one")
    args = parser.parse_args()
    configure_process()
    rows = []
    for n in args.envs:
        rows.append(row(n, ENV_STEPS.get(n, 512 * n), args.repeats))
        got = rows[-1]
        print(f"{n:5d} envs: plain {got['plain']['median']:12,.0f}  vmap of one {got['vmap_of_one']['median']:12,.0f} "
              f"steps/s ({got['speedup']:.2f}x), max |param difference| {got['max_param_difference_after_run']:.3g}",
              flush=True)  # fmt: skip
    print(f"wrote {write_result(args.name, {'benchmark': 'vmap_one', 'repeats': args.repeats, 'rows': rows})}")


if __name__ == "__main__":
    main()
