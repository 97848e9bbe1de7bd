"""Training throughput on CartPole-v1, a2c_jax against the PyTorch baselines, in one run.

Same algorithm, network ([64, 64] tanh, separate actor and critic, orthogonal init),
hyperparameters (SB3 defaults, n_steps 5) and env steps on every side. Each implementation is timed
for about `--seconds` of training after a warm-up; a2c_jax's compile time is reported separately.
PyTorch runs with 1 and with 2 threads and keeps the faster; a2c_jax runs on one device, and from 64
envs also with its envs split over one CPU device per core (`a2c-jax train --devices all`).

    python -m benchmarks.throughput_vs_torch [--envs 1 8 64 512 4096 16384] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import jax
import torch

from a2c_jax.cli import cpu_device_per_core
from benchmarks.common import write_result
from benchmarks.scaling import agent_rate
from benchmarks.throughput import measure as measure_a2c_jax
from benchmarks.torch_a2c import train_gymnasium, train_torch_native

N_STEPS = 5


def timed_rate(train: Callable[[int], float], batch: int, seconds: float) -> float:
    """Env steps/s of `train(total_steps) -> seconds`: a warm-up, then a run of about `seconds`."""
    warm = train(batch * 2)
    estimate = batch * 2 / max(warm, 1e-9)
    steps = max(batch * 2, int(estimate * seconds) // batch * batch)
    return steps / train(steps)


def best_threads(fn: Callable[[], float]) -> tuple[float, int]:
    """Run `fn` with 1 and 2 torch threads; (best rate, its thread count)."""
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append((fn(), threads))
    return max(results)


def sb3_rate(num_envs: int, seconds: float, subproc: bool) -> float:
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    env = make_vec_env("CartPole-v1", n_envs=num_envs, seed=0, vec_env_cls=SubprocVecEnv if subproc else DummyVecEnv)
    model = A2C("MlpPolicy", env, seed=0, device="cpu")

    def train(steps: int) -> float:
        t = time.perf_counter()
        model.learn(total_timesteps=steps, reset_num_timesteps=False)
        return time.perf_counter() - t

    try:
        return timed_rate(train, num_envs * N_STEPS, seconds)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 8, 64, 512, 4096, 16384])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--max-gym-envs", type=int, default=512)
    parser.add_argument("--name", default="cpu-throughput-vs-torch")
    args = parser.parse_args()
    cpu_device_per_core()  # XLA reads it when its backend starts: one device runs as before, `--devices all` splits
    cores = jax.local_device_count() if jax.default_backend() == "cpu" else 1
    rows = []
    for n in args.envs:
        batch = n * N_STEPS
        row: dict = {"num_envs": n}
        jax_row = measure_a2c_jax(n, args.seconds)
        row["a2c_jax"] = jax_row["steps_per_second"]
        row["a2c_jax_compile_seconds"] = jax_row["compile_seconds"]
        if cores > 1 and n >= 64 and n % cores == 0:  # `train --devices all`: the envs split over the cores
            row["a2c_jax_all_cores"] = agent_rate(n, cores, args.seconds)["steps_per_second"]
        row["torch_native"], row["torch_native_threads"] = best_threads(
            lambda n=n, batch=batch: timed_rate(lambda s: train_torch_native(n, N_STEPS, s), batch, args.seconds)
        )
        if n <= args.max_gym_envs:
            row["torch_gymnasium"], _ = best_threads(
                lambda n=n, batch=batch: timed_rate(lambda s: train_gymnasium(n, N_STEPS, s), batch, args.seconds)
            )
            torch.set_num_threads(1)
            row["sb3_dummy"] = sb3_rate(n, args.seconds, subproc=False)
        if n == 8:
            torch.set_num_threads(1)
            row["sb3_subproc"] = sb3_rate(n, args.seconds, subproc=True)
        rows.append(row)
        print({k: (round(v) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    kinds = ("a2c_jax", "a2c_jax_all_cores", "torch_native", "torch_gymnasium", "sb3_dummy")
    best = {k: max((r[k], r["num_envs"]) for r in rows if k in r) for k in kinds if any(k in r for r in rows)}
    at8 = next(r for r in rows if r["num_envs"] == 8) if any(r["num_envs"] == 8 for r in rows) else None
    summary = {
        "best": {k: {"steps_per_second": v[0], "num_envs": v[1]} for k, v in best.items()},
        "a2c_jax_over_sb3_at_8_envs": at8["a2c_jax"] / at8["sb3_dummy"] if at8 else None,
        "a2c_jax_over_sb3_best_vs_best": best["a2c_jax"][0] / best["sb3_dummy"][0],
        "a2c_jax_over_torch_native_best_vs_best": best["a2c_jax"][0] / best["torch_native"][0],
        "cpu_devices": cores,
    }
    if "a2c_jax_all_cores" in best:  # PyTorch keeps the faster of 1 and 2 threads: both sides may use the cores
        fastest = max(best["a2c_jax"][0], best["a2c_jax_all_cores"][0])
        summary["a2c_jax_any_devices_over_sb3_best_vs_best"] = fastest / best["sb3_dummy"][0]
    print(summary)
    path = write_result(
        args.name,
        {"benchmark": "throughput_vs_torch", "env_id": "CartPole-v1", "n_steps": N_STEPS, "rows": rows,
         "summary": summary, "torch": torch.__version__},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
