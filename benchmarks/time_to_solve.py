"""Time to solve CartPole-v1: wall-clock, compile included, until the greedy policy's mean return over
10 evaluation episodes reaches 475. Both sides evaluate every `--eval-every` env steps (evaluation
time counts). a2c_jax: one agent (default preset; cold, and in fresh processes with JAX's persistent
compilation cache warm, as the CLI has it), and 10 seeds in one vmapped program; SB3: the zoo
config (8 envs x 5 steps), one run per seed, with EvalCallback + StopTrainingOnRewardThreshold.

    python -m benchmarks.time_to_solve [--seeds 10] [--sb3-seeds 5] [--eval-every 10000]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.config import preset
from a2c_jax.core.evaluate import evaluate
from a2c_jax.core.train import build_agent, init_state, make_run_chunk
from benchmarks.common import write_result

THRESHOLD, EPISODES = 475.0, 10


def a2c_jax_solve(seeds: list[int], eval_every: int) -> list[dict[str, Any]]:
    """Train `seeds` together (one program; a single seed is one agent) until each is solved or the
    preset's budget ends. Returns per seed: solved, env steps and wall-clock at the first solve."""
    start = time.perf_counter()
    config, hparams = preset("default", "CartPole-v1")
    chunk = max(1, eval_every // config.batch_size)
    agent = build_agent(config)
    run = make_run_chunk(agent, chunk)

    def step(state: Any, key: jax.Array) -> tuple[Any, jax.Array]:
        state, _ = run(state, hparams)
        result = evaluate(agent, state.params, state.env_state.obs_rms, key, EPISODES)
        return state, result.returns.mean()

    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    states = jax.jit(jax.vmap(lambda k: init_state(agent, hparams.as_arrays(), k)))(keys)
    step_fn = jax.jit(jax.vmap(step))
    solved_at: dict[int, tuple[int, float]] = {}
    for i in range(math.ceil(config.num_updates / chunk)):
        eval_keys = jax.vmap(lambda k, i=i: jax.random.fold_in(k, 1000 + i))(keys)
        states, returns = step_fn(states, eval_keys)
        returns = np.asarray(returns)
        now = time.perf_counter() - start
        for j, seed in enumerate(seeds):
            if seed not in solved_at and returns[j] >= THRESHOLD:
                solved_at[seed] = ((i + 1) * chunk * config.batch_size, now)
        if len(solved_at) == len(seeds):
            break
    return [
        {"seed": s, "solved": s in solved_at, "env_steps": solved_at.get(s, (None, None))[0],
         "seconds": solved_at.get(s, (None, None))[1]}
        for s in seeds
    ]  # fmt: skip


def a2c_jax_solve_cached(seed: int, eval_every: int, cache: str) -> dict[str, Any]:
    """One agent in a fresh process with JAX's persistent compilation cache in `cache` (as the CLI
    uses it): the first call fills the cache, later calls measure a warm start."""
    import os

    os.environ["A2C_JAX_CACHE_DIR"] = cache
    from a2c_jax.cli import enable_compile_cache

    enable_compile_cache()
    return a2c_jax_solve([seed], eval_every)[0]


def sb3_solve(seed: int, eval_every: int) -> dict[str, Any]:
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = A2C("MlpPolicy", env, seed=seed, device="cpu")
    stop = StopTrainingOnRewardThreshold(reward_threshold=THRESHOLD)
    callback = EvalCallback(
        make_vec_env("CartPole-v1", n_envs=1, seed=seed + 1000), callback_on_new_best=stop,
        n_eval_episodes=EPISODES, eval_freq=max(1, eval_every // 8), deterministic=True, verbose=0,
    )  # fmt: skip
    model.learn(total_timesteps=500_000, callback=callback)
    solved = callback.best_mean_reward >= THRESHOLD
    return {"seed": seed, "solved": bool(solved), "env_steps": model.num_timesteps if solved else None,
            "seconds": time.perf_counter() - start if solved else None}  # fmt: skip


def median_seconds(rows: list[dict[str, Any]]) -> float | None:
    times = [r["seconds"] for r in rows if r["solved"]]
    return statistics.median(times) if times else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--sb3-seeds", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=10_000)
    args = parser.parse_args()
    single = [a2c_jax_solve([s], args.eval_every)[0] for s in range(args.seeds)]
    print(f"a2c_jax one agent: median {median_seconds(single)} s", flush=True)
    ctx = multiprocessing.get_context("spawn")  # fresh processes: nothing compiled in memory
    with tempfile.TemporaryDirectory() as cache, ProcessPoolExecutor(1, mp_context=ctx) as pool:
        pool.submit(a2c_jax_solve_cached, 0, args.eval_every, cache).result()  # fills the cache
        warm = [pool.submit(a2c_jax_solve_cached, s, args.eval_every, cache).result() for s in range(args.seeds)]
    print(f"a2c_jax one agent, warm compilation cache: median {median_seconds(warm)} s", flush=True)
    population = a2c_jax_solve(list(range(args.seeds)), args.eval_every)
    print(
        f"a2c_jax {args.seeds} seeds in one program: last solved at {max(r['seconds'] or 0 for r in population):.1f} s"
    )
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        sb3 = list(pool.map(sb3_solve, range(args.sb3_seeds), [args.eval_every] * args.sb3_seeds))
    print(f"SB3: median {median_seconds(sb3)} s")
    payload = {
        "benchmark": "time_to_solve", "env_id": "CartPole-v1", "threshold": THRESHOLD, "eval_episodes": EPISODES,
        "eval_every_env_steps": args.eval_every,
        "a2c_jax_single": single, "a2c_jax_single_median_seconds": median_seconds(single),
        "a2c_jax_single_warm_cache": warm, "a2c_jax_single_warm_cache_median_seconds": median_seconds(warm),
        "a2c_jax_population": population,
        "a2c_jax_population_all_solved_seconds": max((r["seconds"] or math.inf) for r in population),
        "sb3": sb3, "sb3_median_seconds": median_seconds(sb3),
        "note": "seconds from the start of building the programs (imports excluded, about 3 s for jax); SB3 runs"
                " two at a time, one per core, each single-threaded",
    }  # fmt: skip
    print(f"wrote {write_result('cpu-time-to-solve', payload)}")


if __name__ == "__main__":
    main()
