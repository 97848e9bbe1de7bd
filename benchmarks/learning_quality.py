"""Learning quality against SB3's A2C with RL-Zoo's tuned settings, at equal env steps.

a2c_jax: 10 seeds trained together in one vmapped program (zoo preset); SB3: 5 seeds, each its own
run with the zoo's hyperparameters (gSDE for Pendulum and MountainCarContinuous, as the zoo uses, on
both sides; a2c_jax's `default` Pendulum preset, without gSDE, is reported too). Final greedy return
over 16 episodes per seed; IQM and 95% bootstrap interval; learning curves against env steps and
wall-clock; a plain verdict.

    python -m benchmarks.learning_quality [--envs CartPole-v1 Acrobot-v1 Pendulum-v1] [--jax-seeds 10] [--sb3-seeds 5]

`--squash-output` adds tanh squashing to every gSDE recipe on both sides (SB3's `squash_output=True`).
`--sb3-from FILE` takes SB3's runs from an earlier result file instead of running them again (they
take most of the time: ~10 minutes per Pendulum seed here); the output says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.config import preset
from a2c_jax.core import stats
from a2c_jax.core.train import build_agent
from a2c_jax.population import sweep
from benchmarks.common import RESULTS, write_result

EPISODES = 16

# RL-Zoo hyperparams/a2c.yml, as SB3 keyword arguments (n_envs, steps, normalize handled separately)
ZOO_SB3: dict[str, dict[str, Any]] = {
    "CartPole-v1": {"n_envs": 8, "steps": 500_000, "normalize": False, "kwargs": {"ent_coef": 0.0}},
    "Acrobot-v1": {"n_envs": 16, "steps": 500_000, "normalize": True, "kwargs": {"ent_coef": 0.0}},
    "Pendulum-v1": {
        "n_envs": 8, "steps": 1_000_000, "normalize": True,
        "kwargs": {"ent_coef": 0.0, "max_grad_norm": 0.5, "n_steps": 8, "gae_lambda": 0.9, "vf_coef": 0.4,
                   "gamma": 0.9, "use_rms_prop": True, "normalize_advantage": False, "use_sde": True,
                   "policy_kwargs": {"log_std_init": -2, "ortho_init": False}, "linear_lr": 7e-4},
    },
    "MountainCarContinuous-v0": {
        "n_envs": 4, "steps": 100_000, "normalize": True,
        "kwargs": {"ent_coef": 0.0, "n_steps": 100, "use_sde": True, "sde_sample_freq": 16,
                   "policy_kwargs": {"log_std_init": 0.0, "ortho_init": False}},
    },
}  # fmt: skip


def jax_runs(env_id: str, preset_name: str, seeds: int, scale: float = 1.0, squash: bool = False) -> dict[str, Any]:
    config, hparams = preset(preset_name, env_id)
    config = dataclasses.replace(
        config, total_timesteps=int(config.total_timesteps * scale), squash_output=squash and config.use_sde
    )
    program = sweep.population_program(build_agent(config), EPISODES)  # trains and evaluates as `a2c-jax train` does
    hps = jax.tree.map(lambda x: jnp.full((seeds,), x, jnp.float32), hparams.as_arrays())
    start = time.perf_counter()
    final, ret, cnt, _ = jax.block_until_ready(program(jnp.arange(seeds), hps))
    wall = time.perf_counter() - start
    curve = sweep.downsample_curve(np.where(np.asarray(cnt) > 0, np.asarray(ret), np.nan), 50)
    steps = np.linspace(0, config.num_updates, 51)[1:].round() * config.batch_size
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bins where no seed finished an episode
        mean_curve = np.nanmean(curve, 0)
    return {
        "final": np.asarray(final).tolist(), "curve": mean_curve.tolist(), "steps": steps.tolist(),
        "wall_seconds": wall, "env_steps": config.num_updates * config.batch_size, "preset": preset_name,
        "squash_output": config.squash_output,
    }  # fmt: skip


def sb3_run(env_id: str, seed: int, scale: float = 1.0, squash: bool = False) -> dict[str, Any]:
    """One SB3 run; returns final greedy return, and (env steps, wall seconds, return) per finished episode."""
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    spec = ZOO_SB3[env_id]
    kwargs = dict(spec["kwargs"])
    if squash and kwargs.get("use_sde"):
        kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), "squash_output": True}
    if "linear_lr" in kwargs:
        lr = kwargs.pop("linear_lr")
        kwargs["learning_rate"] = lambda progress: progress * lr
    env = make_vec_env(env_id, n_envs=spec["n_envs"], seed=seed)
    if spec["normalize"]:
        env = VecNormalize(env, gamma=kwargs.get("gamma", 0.99))
    model = A2C("MlpPolicy", env, seed=seed, device="cpu", **kwargs)
    log: list[tuple[int, float, float]] = []
    start = time.perf_counter()

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    log.append((self.num_timesteps, time.perf_counter() - start, float(info["episode"]["r"])))
            return True

    steps = int(spec["steps"] * scale)
    model.learn(total_timesteps=steps, callback=Record())
    wall = time.perf_counter() - start
    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 1000)
    if spec["normalize"]:
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        eval_env.obs_rms = env.obs_rms
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=EPISODES, deterministic=True)
    return {"seed": seed, "final": float(mean), "log": log, "wall_seconds": wall, "env_steps": steps}


def summary(x: list[float]) -> dict[str, float]:
    low, high = stats.bootstrap_ci(np.asarray(x))
    return {"iqm": stats.iqm(np.asarray(x)), "ci_low": low, "ci_high": high}


def plot(results: dict[str, Any], path: Any) -> None:
    from benchmarks.plots import plot_learning_quality

    plot_learning_quality(results, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ZOO_SB3))
    parser.add_argument("--jax-seeds", type=int, default=10)
    parser.add_argument("--sb3-seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget (for a quick check)")
    parser.add_argument("--name", default="cpu-learning-quality")
    parser.add_argument("--squash-output", action="store_true", help="tanh-squash every gSDE recipe, both sides")
    parser.add_argument("--sb3-from", default=None, help="reuse SB3's runs from this earlier result JSON")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    # a2c_jax first, alone on the machine; then SB3, one single-threaded run per core
    for env in args.envs:
        results[env] = {"a2c_jax_zoo": jax_runs(env, "zoo", args.jax_seeds, args.scale, args.squash_output)}
        if env == "Pendulum-v1" and not args.squash_output:
            results[env]["a2c_jax_default"] = jax_runs(env, "default", args.jax_seeds, args.scale)
    if args.sb3_from:
        earlier = json.loads(Path(args.sb3_from).read_text())["results"]
        sb3_runs = {env: earlier[env]["sb3"] for env in args.envs}
    else:
        # spawn, not fork: the parent has JAX's threads running
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {
                env: [pool.submit(sb3_run, env, s, args.scale, args.squash_output) for s in range(args.sb3_seeds)]
                for env in args.envs
            }
            sb3_runs = {env: [f.result() for f in futures[env]] for env in args.envs}
    for env in args.envs:
        entry = results[env]
        entry["sb3"] = sb3_runs[env]
        sb3 = summary([r["final"] for r in entry["sb3"]])
        entry["sb3_summary"] = sb3
        for key in [k for k in entry if k.startswith("a2c_jax")]:
            s = summary(entry[key]["final"])
            s["within_sb3_interval"] = sb3["ci_low"] <= s["iqm"] <= sb3["ci_high"]
            s["at_least_sb3_lower_bound"] = s["iqm"] >= sb3["ci_low"]
            entry[key + "_summary"] = s
            print(f"{env} {key}: IQM {s['iqm']:.1f} [{s['ci_low']:.1f}, {s['ci_high']:.1f}]; SB3 IQM "
                  f"{sb3['iqm']:.1f} [{sb3['ci_low']:.1f}, {sb3['ci_high']:.1f}]", flush=True)  # fmt: skip
    plot(results, RESULTS / f"{args.name}.png")
    if args.sb3_from:  # SB3's per-episode logs stay in the file they came from
        for entry in results.values():
            entry["sb3"] = [{**run, "log": []} for run in entry["sb3"]]
    payload = {"benchmark": "learning_quality", "scale": args.scale, "squash_output": args.squash_output,
               "sb3_from": args.sb3_from, "results": results}  # fmt: skip
    print(f"wrote {write_result(args.name, payload)}")


if __name__ == "__main__":
    main()
