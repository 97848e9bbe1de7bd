"""Where a training step's time goes: a split (env / acting / learning), the FLOPs per env step and
the achieved GFLOP/s against the CPU's peak, and a jax.profiler trace summarised by XLA op kind.

SB3's CartPole settings (n_steps 5, [64, 64] tanh actor and critic) at each `--envs` value:
- env: gymnax CartPole stepped with random actions (vmapped, auto-reset), in one scan;
- rollout: the policy acting (actor forward + sampling) plus env steps, as `rollout` does;
- update: the full A2C update (rollout, values, GAE, loss gradient, clip, RMSprop), fused as in training.
FLOPs come from XLA's cost analysis of one compiled update. The peak assumes 2 FMA pipes of 256 bits
per core (32 float32 FLOP per cycle: AVX2, or AVX-512 executed as two halves) at the reported clock.
The compiled program's two hot loops (the update loop and the rollout's step loop) are sized from
XLA's optimised HLO: instructions that run as kernels ("thunks") per iteration, and how many of them
are copies of loop state. The trace (jax.profiler, perfetto JSON) gives the time share by op kind;
it records a sample of the thunks and adds its own per-thunk overhead, so only shares are used.

Every program runs as `a2c-jax train` runs on a CPU: vmapped over a member axis of size 1
(`runs.runner.as_population_of_one`); `--plain` profiles the plain programs instead.

    python -m benchmarks.profile [--envs 8 1024] [--updates 2000] [--plain]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from a2c_jax.config import A2CConfig, HParams, preset
from a2c_jax.core.rollout import rollout
from a2c_jax.core.train import TrainState, build_agent, init_state, make_train, update
from benchmarks.common import write_result


def as_one(fn: Any, plain: bool = False) -> Any:
    """`fn` computed as a population of one (vmapped over a leading axis of size 1 added to its
    arguments and taken off its results), as a CPU training program runs; `plain`: `fn` itself."""
    if plain:
        return fn

    def run(*args: Any) -> Any:
        out = jax.vmap(fn)(*jax.tree.map(lambda x: x[None], args))
        return jax.tree.map(lambda x: x[0], out)

    return run


def best_rate(fn: Any, arg: Any, steps: int, repeats: int = 3) -> float:
    """Env steps per second of compiled `fn(arg)` (best of `repeats` after one warm-up)."""
    jax.block_until_ready(fn(arg))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(arg))
        best = max(best, steps / (time.perf_counter() - start))
    return best


def env_only(config: A2CConfig, updates: int, plain: bool = False) -> Any:
    """jit(state -> state): updates * T vmapped env steps with random actions."""
    agent = build_agent(config)
    n, dim = config.num_envs, agent.spec.action_dim

    def run(state: TrainState) -> Any:
        def body(s: Any, key: jax.Array) -> tuple[Any, None]:
            action = jax.random.randint(key, (n,), 0, dim)
            obs, env_state, *_ = agent.vec_env.step(key, s[0], action, jnp.float32(0.99))
            return (env_state, obs), None

        keys = jax.random.split(state.key, updates * config.num_steps)
        return jax.lax.scan(body, (state.env_state, state.obs), keys)[0]

    return jax.jit(as_one(run, plain))


def rollouts_only(config: A2CConfig, hparams: HParams, updates: int, plain: bool = False) -> Any:
    """jit(state -> state): `updates` rollouts with fixed parameters (acting, no learning)."""
    agent = build_agent(config)

    def run(state: TrainState) -> Any:
        def body(s: TrainState, key: jax.Array) -> tuple[TrainState, None]:
            env_state, obs, carry, _ = rollout(
                agent.policy, s.params, agent.vec_env, s.env_state, s.obs, s.carry, key, config.num_steps, hparams.gamma
            )
            return dataclasses.replace(s, env_state=env_state, obs=obs, carry=carry), None

        return jax.lax.scan(body, state, jax.random.split(state.key, updates))[0]

    return jax.jit(as_one(run, plain))


def flops_per_update(config: A2CConfig, hparams: HParams, state: TrainState) -> float:
    return update_cost(config, hparams, state)["flops_per_update"]


def update_cost(config: A2CConfig, hparams: HParams, state: TrainState | None = None) -> dict[str, Any]:
    """XLA's cost analysis of one compiled update of `config` (`hparams` as arrays): FLOPs and bytes
    accessed per update and per env step, and the kernels per iteration of the training program's hot
    loops (`hot_loops`: counted statically in the optimised HLO, not from a profiler)."""
    agent = build_agent(config)
    if state is None:
        state = jax.jit(init_state, static_argnums=0)(agent, hparams, jax.random.PRNGKey(0))
    compiled = jax.jit(lambda s: update(agent, s, hparams)).lower(state).compile()
    cost = compiled.cost_analysis() or {}
    cost = cost[0] if isinstance(cost, list) else cost
    flops, moved = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
    program = jax.jit(make_train(config)).lower(jax.random.PRNGKey(0), hparams).compile()
    return {
        "flops_per_update": flops,
        "bytes_per_update": moved,
        "flops_per_env_step": flops / config.batch_size,
        "bytes_per_env_step": moved / config.batch_size,
        "hot_loop_kernels": hot_loops(program.as_text()),
    }


def peak_gflops() -> tuple[float, str]:
    """(peak float32 GFLOP/s, how it was computed) from /proc/cpuinfo; 0 when unknown."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        mhz = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", info).group(1))  # type: ignore[union-attr]
        cores = info.count("processor\t:")
    except (OSError, AttributeError):
        return 0.0, "unknown"
    return cores * mhz / 1e3 * 32, f"{cores} cores x {mhz / 1e3:.2f} GHz x 32 FLOP/cycle"


_FREE = ("parameter", "get-tuple-element", "tuple", "constant", "bitcast")


def hot_loops(hlo: str) -> list[dict[str, Any]]:
    """Per while loop with more than 40 instructions in its body: kernels and copies per iteration."""
    computations = {c.split(" ")[0].lstrip("%"): c for c in re.split(r"\n(?=\S.*\{\n)", hlo)}
    loops = []
    for body in re.findall(r"while\(.*?\), condition=%\S+, body=%([\w.\-]+)", hlo):
        ops = re.findall(r"= \S+ ([a-z][a-z\-]*)\(", computations.get(body, ""))
        kernels = [op for op in ops if op not in _FREE]
        if len(ops) > 40:
            loops.append({"kernels": len(kernels), "copies": kernels.count("copy")})
    return sorted(loops, key=lambda x: -x["kernels"])


def trace_summary(train: Any, hparams: HParams) -> dict[str, float]:
    """Run the fused program under jax.profiler and summarise its XLA thunks by kind."""
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            jax.block_until_ready(train(jax.random.PRNGKey(1), hparams))
        with gzip.open(glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)[0]) as f:
            events = json.load(f)["traceEvents"]
    time_by_kind: collections.Counter[str] = collections.Counter()
    for e in events:
        name = e.get("name", "")
        # XLA instructions are named like "copy.12" or "broadcast_add_fusion.3"; loops are containers
        if e.get("ph") != "X" or not re.fullmatch(r"[a-z][a-z0-9_\-]*\.\d+", name) or name.startswith("while"):
            continue
        kind = name.split(".")[0]
        kind = next((k for k in ("copy", "dot", "fusion", "call") if k in kind), "other")
        time_by_kind[kind] += e["dur"]
    total = sum(time_by_kind.values())
    return {k: v / total for k, v in time_by_kind.most_common()}


def profile(num_envs: int, updates: int, plain: bool = False) -> dict[str, Any]:
    base, hparams = preset("sb3", "CartPole-v1")
    config = dataclasses.replace(base, num_envs=num_envs, total_timesteps=updates * num_envs * base.num_steps)
    hp = hparams.as_arrays()
    state = jax.jit(init_state, static_argnums=0)(build_agent(config), hp, jax.random.PRNGKey(0))
    steps = updates * config.batch_size
    train = jax.jit(as_one(make_train(config), plain))
    rates = {
        "env": best_rate(env_only(config, updates, plain), state, steps),
        "rollout": best_rate(rollouts_only(config, hp, updates, plain), state, steps),
        "update": best_rate(lambda key: train(key, hp), jax.random.PRNGKey(0), steps),
    }
    us = {k: 1e6 * config.batch_size / v for k, v in rates.items()}
    flops = flops_per_update(config, hp, state)
    peak, how = peak_gflops()
    achieved = flops / config.batch_size * rates["update"] / 1e9
    return {
        "num_envs": num_envs,
        "num_steps": config.num_steps,
        "programs": "plain" if plain else "population of one",
        "steps_per_second": rates,
        "microseconds_per_update": {
            "env": us["env"],
            "acting": us["rollout"] - us["env"],
            "learning": us["update"] - us["rollout"],
            "total": us["update"],
        },
        "flops_per_env_step": flops / config.batch_size,
        "achieved_gflops": achieved,
        "peak_gflops": peak,
        "peak_how": how,
        "share_of_peak": achieved / peak if peak else None,
        "hot_loops": hot_loops(train.lower(jax.random.PRNGKey(0), hparams).compile().as_text() or ""),
        "trace_time_share_by_kind": trace_summary(train, hparams),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 64, 1024])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--plain", action="store_true", help="profile the plain programs (not a population of one)")
    parser.add_argument("--name", default="cpu-profile")
    args = parser.parse_args()
    rows = []
    for n in args.envs:
        rows.append(row := profile(n, args.updates, args.plain))
        split = ", ".join(f"{k} {v:.0f} us" for k, v in row["microseconds_per_update"].items())
        print(
            f"n_envs {n}: {row['steps_per_second']['update']:,.0f} steps/s; per update {split}; "
            f"{row['flops_per_env_step'] / 1e3:.0f} kFLOP/step, {row['achieved_gflops']:.1f} GFLOP/s "
            f"({100 * (row['share_of_peak'] or 0):.0f}% of {row['peak_gflops']:.0f}); "
            f"loops (kernels, copies per iteration) {row['hot_loops']}; trace time shares "
            f"{ {k: round(v, 2) for k, v in row['trace_time_share_by_kind'].items()} }",
            flush=True,
        )
    print(f"wrote {write_result(args.name, {'benchmark': 'profile', 'rows': rows})}")


if __name__ == "__main__":
    main()
