"""`a2c-jax train` on one CPU device against its env axis split over one CPU device per core
(`--devices all`), the split program both plain and as a population of one (`runs.runner`).

On a CPU, XLA's one device already runs its kernels on every core; `--devices N` asks for N virtual
devices and splits the envs over them, adding a gradient all-reduce per update. Each contender is
the host loop's chunk program (`benchmarks.throughput.prepare_a2c_jax`), compiled once, warmed up and
timed in interleaved rounds (`benchmarks.timing`). SB3's CartPole settings (5 steps, [64, 64]).

    python -m benchmarks.devices_split [--envs 64 512 4096] [--repeats 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from benchmarks.common import write_result
from benchmarks.timing import Contender, Run, time_interleaved

N_STEPS = 5


def plain_split(devices: int) -> Callable[..., Any]:
    """`runs.runner.compile_chunk` for a device layout without the population-of-one wrapping."""
    import jax
    import jax.numpy as jnp

    from a2c_jax.config import HParams
    from a2c_jax.runs.runner import abstract_state, make_run_chunk, state_shardings

    def compile_chunk(agent: Any, chunk: int, layout: Any = None, programs: Any = None) -> Any:
        state = abstract_state(agent)
        hp = jax.eval_shape(HParams().as_arrays)
        shard, rep = state_shardings(state, layout), layout.replicated
        program = jax.jit(make_run_chunk(agent, chunk), in_shardings=(shard, rep, rep), out_shardings=(shard, rep))
        return program.lower(state, hp, jnp.int32(chunk)).compile()

    return compile_chunk


def contenders(num_envs: int, cores: int) -> list[Contender]:
    """One device; split over `cores` devices as a population of one (what `--devices all` runs) and plain."""
    import benchmarks.throughput as throughput
    from a2c_jax.runs.runner import compile_chunk

    config, hparams = throughput.sized(num_envs, N_STEPS)
    batch = num_envs * N_STEPS

    def prepare(devices: int, plain: bool = False) -> Callable[[], Run]:
        def build() -> Run:
            throughput.compile_chunk = plain_split(devices) if plain else compile_chunk
            try:
                return throughput.prepare_a2c_jax(config, hparams, devices)
            finally:
                throughput.compile_chunk = compile_chunk

        return build

    return [
        Contender("one_device", prepare(1), batch, info={"devices": 1}),
        Contender("split", prepare(cores), batch, info={"devices": cores}),
        Contender("split_plain", prepare(cores, plain=True), batch, info={"devices": cores}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[64, 512, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--name", default="cpu-devices-split")
    args = parser.parse_args()
    from a2c_jax.cli import cpu_device_per_core

    cpu_device_per_core()  # before JAX starts: one device per core, the first used alone by one_device
    from a2c_jax.runs.process import configure_process

    configure_process()
    import jax

    cores = jax.device_count()
    rows = []
    for n in args.envs:
        print(f"{n} envs", flush=True)
        stats = time_interleaved(contenders(n, cores), args.seconds, args.repeats)
        one = stats["one_device"]["median"]
        rows.append({"num_envs": n, "contenders": stats,
                     "split_over_one_device": stats["split"]["median"] / one,
                     "split_over_split_plain": stats["split"]["median"] / stats["split_plain"]["median"]})  # fmt: skip
    payload = {"benchmark": "devices_split", "cpu_devices": cores, "num_steps": N_STEPS, "repeats": args.repeats,
               "seconds_per_repeat": args.seconds, "rows": rows, "cpu_count": os.cpu_count()}  # fmt: skip
    print(f"wrote {write_result(args.name, payload)}")


if __name__ == "__main__":
    main()
