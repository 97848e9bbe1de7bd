"""Hyperparameter search at equal env steps: Optuna TPE in batches vs random search (Optuna's
RandomSampler, same code path) vs a grid vs PBT, each trial trained x seeds as vmapped populations;
then one large TPE study (the issue's 256 trials x 3 seeds) against SB3 + Optuna's one-trial-at-a-
time cost, measured here as SB3's seconds for one seed of one trial.

The best setting each method finds is re-evaluated on fresh seeds (its search score is the maximum
of many noisy estimates, so it is biased upwards), and so is RL-Zoo's tuned preset at the same budget.

    python -m benchmarks.tuning [--env-id Acrobot-v1] [--steps 100000] [--trials 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np

from a2c_jax.config import preset
from a2c_jax.core import stats
from a2c_jax.population import sweep
from a2c_jax.population.space import SearchSpace, expand_settings, parse_grid, parse_ranges
from a2c_jax.population.study import best_setting, optimize, population_evaluator, quiet_optuna, ranking_rows
from benchmarks.common import write_result

RANGES = ["lr=1e-4:1e-2:log", "ent_coef=1e-6:1e-1:log", "gae_lambda=0.8:1.0", "vf_coef=0.2:1.0"]
STATIC = ["num_steps=5,8,16"]
GRID = ["lr=3e-4,1e-3,3e-3,1e-2", "ent_coef=0,0.01", "gae_lambda=0.9,1.0", "vf_coef=0.25,0.5", "num_steps=5,16"]
PBT_RANGES = ["lr=1e-4:1e-2:log", "ent_coef=1e-6:1e-1:log", "gae_lambda=0.8:1.0", "vf_coef=0.2:1.0"]


def summary(x: Any) -> dict[str, Any]:
    x = np.asarray(x, np.float64)
    low, high = stats.bootstrap_ci(x)
    return {"iqm": stats.iqm(x), "ci_low": low, "ci_high": high, "values": x.tolist()}


def fresh_returns(config: Any, hparams: Any, setting: dict[str, Any], seeds: list[int], episodes: int) -> np.ndarray:
    """Greedy final returns of `setting` trained on seeds it was not selected on."""
    members = sweep.make_members(config, hparams, [setting], seeds)
    return sweep.run_sweep(members, [setting], episodes).final_return


def run_study(sampler: str, space: SearchSpace, trials: int, batch: int, evaluate: Any, seed: int) -> tuple[Any, float]:
    import optuna

    from a2c_jax.population.study import make_sampler

    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, space, seed))
    start = time.perf_counter()
    optimize(study, space, trials, batch, evaluate)
    return study, time.perf_counter() - start


def best_so_far(study: Any, space: SearchSpace, trials_per_round: int) -> list[float]:
    """The best clean IQM after each round, in trial order."""
    rows = sorted(ranking_rows(study, space), key=lambda r: r["trial"])
    values = [r["iqm"] if r["diverged"] == 0 else -np.inf for r in rows]
    best = np.maximum.accumulate(values)
    return [float(best[min(len(best), i) - 1]) for i in range(trials_per_round, len(best) + 1, trials_per_round)]


def sb3_seconds_per_trial(env_id: str, steps: int, config: Any) -> float:
    """Wall-clock of one SB3 A2C training run (one seed) of `steps` with the zoo's n_envs, as RL-Zoo's
    Optuna tuner runs each trial."""
    import gymnasium as gym
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env(lambda: gym.make(env_id), n_envs=config.num_envs))
    model = A2C("MlpPolicy", env, n_steps=config.num_steps, seed=0, device="cpu")
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="Acrobot-v1")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per member")
    parser.add_argument("--trials", type=int, default=64, help="trials per search in the method comparison")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-trials", type=int, default=256, help="trials of the large TPE study (0: skip)")
    parser.add_argument("--fresh-seeds", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--sb3", action="store_true", help="time SB3 for one trial (needs the baselines extra)")
    parser.add_argument("--methods", nargs="*", default=["tpe", "random", "grid", "pbt"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    quiet_optuna()
    config, hparams = preset("zoo", args.env_id)
    config = dataclasses.replace(config, total_timesteps=args.steps).validate()
    seeds = list(range(args.seeds))
    fresh = list(range(1000, 1000 + args.fresh_seeds))
    evaluate = population_evaluator(config, hparams, seeds, args.episodes)
    space = SearchSpace(parse_grid(STATIC), parse_ranges(RANGES, int_config=True))
    result: dict[str, Any] = {
        "benchmark": "tuning", "env_id": args.env_id, "base": "zoo preset", "env_steps_per_member": args.steps,
        "seeds_per_trial": args.seeds, "trials": args.trials, "batch": args.batch, "search_space": RANGES + STATIC,
        "grid": GRID, "methods": {},
    }  # fmt: skip

    zoo = fresh_returns(config, hparams, {}, fresh, args.episodes)
    result["zoo_preset_fresh_seeds"] = summary(zoo)
    print(f"zoo preset at {args.steps} steps, {len(fresh)} fresh seeds: IQM {stats.iqm(zoo):.1f}")

    for method in args.methods:
        runs = []
        for repeat in range(args.repeats):
            t = time.perf_counter()
            if method in ("tpe", "random"):
                study, _ = run_study(method, space, args.trials, args.batch, evaluate, repeat)
                ranked = ranking_rows(study, space)  # clean trials first
                best = best_setting(ranked, space)
                curve = best_so_far(study, space, args.batch)
                search_iqm = ranked[0]["iqm"]
            elif method == "grid":
                settings = expand_settings(parse_grid(GRID), {}, 0)
                members = sweep.make_members(config, hparams, settings, seeds)
                res = sweep.run_sweep(members, settings, args.episodes)
                top = sweep.rank_settings(res)[0]
                best = {k: top[k] for k in settings[0]}
                curve, search_iqm = [], top["iqm"]
            else:
                best, search_iqm = run_pbt(config, hparams, args, repeat)
                curve = []
            seconds = time.perf_counter() - t
            returns = fresh_returns(config, hparams, best, fresh, args.episodes)
            runs.append({"best": best, "search_iqm": search_iqm, "fresh": summary(returns), "seconds": seconds,
                         "best_so_far_per_round": curve})  # fmt: skip
            print(f"{method} #{repeat}: search IQM {search_iqm:.1f}, fresh seeds IQM {stats.iqm(returns):.1f}, "
                  f"{seconds:.0f}s, best {best}")  # fmt: skip
        fresh_iqms = np.array([r["fresh"]["iqm"] for r in runs])
        result["methods"][method] = {"runs": runs, "fresh_iqm_over_repeats": summary(fresh_iqms),
                                     "seconds_mean": float(np.mean([r["seconds"] for r in runs]))}  # fmt: skip

    if args.big_trials:
        study, seconds = run_study("tpe", space, args.big_trials, 64, evaluate, 0)
        ranked = ranking_rows(study, space)  # clean trials first
        best = best_setting(ranked, space)
        returns = fresh_returns(config, hparams, best, fresh, args.episodes)
        result["big_study"] = {"trials": args.big_trials, "batch": 64, "seeds": args.seeds, "seconds": seconds,
                               "best": best, "search_iqm": ranked[0]["iqm"], "fresh": summary(returns),
                               "beats_zoo_preset": bool(stats.iqm(returns) >= stats.iqm(zoo))}  # fmt: skip
        print(f"TPE {args.big_trials} trials x {args.seeds} seeds: {seconds:.0f}s, fresh IQM {stats.iqm(returns):.1f}")
        if args.sb3:
            per_seed = sb3_seconds_per_trial(args.env_id, args.steps, config)
            estimate = per_seed * args.seeds * args.big_trials
            result["sb3_optuna"] = {"seconds_per_seed_trial": per_seed, "estimate_seconds": estimate,
                                    "speedup": estimate / seconds}  # fmt: skip
            print(f"SB3: {per_seed:.1f}s per seed-trial -> {estimate:.0f}s estimated; {estimate / seconds:.1f}x")
    path = write_result(args.out or f"cpu-tuning-{args.env_id}", result)
    if result["methods"]:
        from benchmarks.plots import plot_tuning

        plot_tuning(result, path.with_suffix(".png"))
    print(f"wrote {path}")


def run_pbt(config: Any, hparams: Any, args: Any, repeat: int) -> tuple[dict[str, Any], float]:
    """PBT over the same ranges with trials x seeds members (equal env steps); the best member's final
    hyperparameters are its answer."""
    import jax

    from a2c_jax.population.pbt import make_pbt

    ranges = parse_ranges(PBT_RANGES)
    settings = expand_settings({}, ranges, args.trials, seed=repeat)
    members = sweep.make_members(config, hparams, settings, list(range(args.seeds)))
    names = list(ranges)
    program = jax.jit(make_pbt(config, max(1, config.num_updates // 10), names, 0.25, args.episodes))
    seeds = np.array([m.seed for m in members], np.int32)
    out = jax.block_until_ready(program(seeds, sweep.stack_hparams(members), jax.random.PRNGKey(repeat)))
    final = np.where(np.asarray(out.diverged), -np.inf, np.asarray(out.final_return))
    best = int(np.argmax(final))
    return {n: float(np.asarray(getattr(out.schedule, n))[-1, best]) for n in names}, float(final[best])


if __name__ == "__main__":
    main()
