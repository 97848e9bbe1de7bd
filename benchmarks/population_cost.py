"""Where a population's env step costs more than one big agent's: 64 members x 8 envs against one agent
with 512 envs (the same 2,560 env steps per update; RL-Zoo's CartPole config, 5 steps), one device.

Per program, env steps per second of (a) full training updates, (b) rollouts only (acting and env
steps with fixed parameters), and (c) the optimizer step alone (clip by global norm, RMSprop, apply)
on the program's parameters, in microseconds per update. (a) - (b) is the learning part. The
hyperparameters are arguments (an array per member in the population), as in training and sweeps. Each
program is compiled once, warmed up, and timed `--repeats` times, the two sides alternating.

    python -m benchmarks.population_cost [--updates 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from a2c_jax.config import A2CConfig, HParams, preset
from a2c_jax.core.rollout import rollout
from a2c_jax.core.train import TrainState, build_agent, init_state, make_optimizer, update
from a2c_jax.runs.process import configure_process
from benchmarks.common import write_result


def side_programs(
    config: A2CConfig, hparams: HParams, members: int, updates: int, vmapped: bool = True
) -> dict[str, Any]:
    """Compiled (full, rollout-only, optimizer step) programs of `members` agents and their inputs,
    vmapped over a member axis (`vmapped=False`: one agent's plain program). Hyperparameters are
    arguments (per member in the population), as in training."""
    agent = build_agent(config)

    def full(s: TrainState, hp: HParams) -> TrainState:
        return jax.lax.fori_loop(0, updates, lambda i, s: update(agent, s, hp)[0], s)

    def acting(s: TrainState, hp: HParams) -> TrainState:
        def body(i: Any, s: TrainState) -> TrainState:
            key = jax.random.fold_in(s.key, i)
            env_state, obs, carry, _ = rollout(
                agent.policy, s.params, agent.vec_env, s.env_state, s.obs, s.carry, key, config.num_steps, hp.gamma
            )
            return dataclasses.replace(s, env_state=env_state, obs=obs, carry=carry)

        return jax.lax.fori_loop(0, updates, body, s)

    def opt_step(params: Any, opt_state: Any, grads: Any, hp: HParams) -> Any:
        step, opt_state = make_optimizer(config.optimizer, hp, hp.lr).update(grads, opt_state, params)
        return optax.apply_updates(params, step), opt_state

    def init(key: jax.Array, hp: HParams) -> TrainState:
        return init_state(agent, hp, key)

    keys: Any = jax.random.PRNGKey(0)
    hp: Any = hparams.as_arrays()
    if vmapped:
        full, acting, opt_step, init = jax.vmap(full), jax.vmap(acting), jax.vmap(opt_step), jax.vmap(init)
        keys = jax.random.split(keys, members)
        hp = jax.tree.map(lambda x: jnp.full((members,), x), hp)
    state = jax.jit(init)(keys, hp)
    grads = jax.tree.map(lambda x: x * 0.01, state.params)
    return {
        "full": (jax.jit(full).lower(state, hp).compile(), (state, hp)),
        "rollout": (jax.jit(acting).lower(state, hp).compile(), (state, hp)),
        "optimizer": (jax.jit(opt_step).lower(state.params, state.opt_state, grads, hp).compile(),
                      (state.params, state.opt_state, grads, hp)),
    }  # fmt: skip


def seconds(fn: Callable[..., Any], args: tuple[Any, ...], calls: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="cpu-population-cost")
    args = parser.parse_args()
    configure_process()
    config, hparams = preset("zoo", "CartPole-v1")
    big = dataclasses.replace(config, num_envs=512)
    sides = {  # one agent as `a2c-jax train` runs it on a CPU (a population of one), and plain
        "one_agent_512_envs": (big, 1, True),
        "one_agent_512_envs_plain": (big, 1, False),
        "population_64x8": (config, 64, True),
    }
    programs = {name: side_programs(c, hparams, m, args.updates, v) for name, (c, m, v) in sides.items()}
    times: dict[str, dict[str, list[float]]] = {name: {k: [] for k in programs[name]} for name in sides}
    for name in sides:  # warm-up
        for fn, fn_args in programs[name].values():
            seconds(fn, fn_args)
    for r in range(args.repeats):
        for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
            for kind, (fn, fn_args) in programs[name].items():
                times[name][kind].append(seconds(fn, fn_args, 20 if kind == "optimizer" else 1))
    rows: dict[str, Any] = {}
    for name, (c, m, v) in sides.items():
        steps = args.updates * c.num_envs * c.num_steps * m
        full, acting = statistics.median(times[name]["full"]), statistics.median(times[name]["rollout"])
        rows[name] = {
            "members": m,
            "vmapped": v,
            "envs_per_member": c.num_envs,
            "full_env_steps_per_second": steps / full,
            "rollout_only_env_steps_per_second": steps / acting,
            "update_us": full / args.updates * 1e6,
            "acting_us_per_update": acting / args.updates * 1e6,
            "learning_us_per_update": (full - acting) / args.updates * 1e6,
            "optimizer_step_us": statistics.median(times[name]["optimizer"]) * 1e6,
            "parameters": sum(x.size for x in jax.tree.leaves(programs[name]["optimizer"][1][0])),
            "seconds": times[name],
        }
        print(name, {k: round(v) for k, v in rows[name].items() if isinstance(v, float)}, flush=True)
    rate = {name: row["full_env_steps_per_second"] for name, row in rows.items()}
    ratio = rate["population_64x8"] / rate["one_agent_512_envs"]
    plain_ratio = rate["population_64x8"] / rate["one_agent_512_envs_plain"]
    print(f"population / one agent, per env step: {ratio:.2f}x ({plain_ratio:.2f}x against the plain program)")
    payload = {"benchmark": "population_cost", "config": "zoo CartPole-v1", "updates": args.updates,
               "repeats": args.repeats, "rows": rows, "population_vs_one_agent": ratio,
               "population_vs_one_agent_plain": plain_ratio}  # fmt: skip
    print(f"wrote {write_result(args.name, payload)}")


if __name__ == "__main__":
    main()
