"""Training throughput on CartPole-v1, a2c_jax against the PyTorch baselines at their best, side by side.

Same algorithm, network ([64, 64] tanh, separate actor and critic, orthogonal init), hyperparameters
(SB3's, n_steps 5) and env steps on every side. Every contender is built and compiled once, warmed up,
then timed in `--repeats` rounds that interleave all contenders of the row (`benchmarks.timing`); a row
reports each contender's median env steps/s and its range. The contenders:

- a2c_jax on one device, and from 64 envs also with its envs split over one CPU device per core
  (`a2c-jax train --devices all`);
- plain PyTorch on batched tensor CartPole (`benchmarks.torch_a2c.NativeTrainer`), eager without
  per-update host syncs and through `torch.compile`, each at 1 and 2 threads;
- the same loop stepping gymnasium's vector CartPole (up to `--max-gym-envs`), at 1 and 2 threads;
- SB3's A2C with DummyVecEnv at 1 and 2 threads (up to `--max-gym-envs`), and SubprocVecEnv at 8 envs.

Ratios are taken against the fastest PyTorch variant of the row (and against SB3's faster thread count).

    python -m benchmarks.throughput_vs_torch [--envs 8 512 16384] [--seconds 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import jax

from a2c_jax.cli import cpu_device_per_core
from benchmarks.common import set_precision, write_result
from benchmarks.throughput import prepare_a2c_jax, sized
from benchmarks.timing import Contender, Run, time_interleaved
from benchmarks.torch_a2c import NativeTrainer, rollout, train_gymnasium

N_STEPS = 5


def sb3_prepare(num_envs: int, subproc: bool) -> Callable[[], Run]:
    """SB3's A2C (MlpPolicy, its defaults) on gymnasium's CartPole-v1; `run(updates)` learns on."""

    def prepare() -> Run:
        from stable_baselines3 import A2C
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

        vec_env_cls = SubprocVecEnv if subproc else DummyVecEnv
        env = make_vec_env("CartPole-v1", n_envs=num_envs, seed=0, vec_env_cls=vec_env_cls)
        model = A2C("MlpPolicy", env, seed=0, device="cpu")
        return lambda updates: model.learn(total_timesteps=updates * num_envs * N_STEPS, reset_num_timesteps=False)

    return prepare


def native_prepare(num_envs: int, variant: str) -> Callable[[], Run]:
    def prepare() -> Run:
        return NativeTrainer(num_envs, N_STEPS, "cpu", variant).run

    return prepare


def gymnasium_prepare(num_envs: int) -> Callable[[], Run]:
    def prepare() -> Run:
        return lambda updates: (train_gymnasium(num_envs, N_STEPS, updates * num_envs * N_STEPS), None)[1]

    return prepare


def contenders(n: int, cores: int, max_gym_envs: int, variants: list[str]) -> list[Contender]:
    """Every contender of the row with `n` envs."""
    config, hparams = sized(n, N_STEPS)
    batch = n * N_STEPS
    out = [Contender("a2c_jax", lambda: prepare_a2c_jax(config, hparams), batch, info={"devices": 1})]
    if cores > 1 and n >= 64 and n % cores == 0:
        split = Contender("a2c_jax_all_cores", lambda: prepare_a2c_jax(config, hparams, cores), batch)
        out.append(dataclasses.replace(split, info={"devices": cores}))
    for threads in (1, 2):
        for variant in variants:
            name = f"torch_{variant}_{threads}t"
            out.append(Contender(name, native_prepare(n, variant), batch, threads, {"variant": variant}))
        if n <= max_gym_envs:
            out.append(Contender(f"torch_gymnasium_{threads}t", gymnasium_prepare(n), batch, threads))
            out.append(Contender(f"sb3_{threads}t", sb3_prepare(n, subproc=False), batch, threads))
    if n == 8:
        out.append(Contender("sb3_subproc_1t", sb3_prepare(n, subproc=True), batch, 1))
    return out


def best(stats: dict[str, dict], prefix: str) -> tuple[str, float] | None:
    """The fastest contender whose name starts with `prefix`: (name, median steps/s)."""
    found = [(s["median"], name) for name, s in stats.items() if name.startswith(prefix) and "median" in s]
    return (max(found)[1], max(found)[0]) if found else None


def ratios(stats: dict[str, dict]) -> dict[str, object]:
    """a2c_jax on one device over the best of each opponent family (`a2c_jax_over_<family>`), and
    a2c_jax at its best device count over the fastest PyTorch variant and over SB3's best."""
    out: dict[str, object] = {}
    one = stats.get("a2c_jax", {}).get("median")
    fastest = best(stats, "a2c_jax")
    for family in ("torch_eager", "torch_compile", "torch_gymnasium", "sb3_"):
        theirs = best(stats, family)
        if theirs and one:
            out[f"{family.rstrip('_')}_best"] = theirs[0]
            out[f"a2c_jax_over_{family.rstrip('_')}"] = one / theirs[1]
    torch_best = [b for b in (best(stats, "torch_eager"), best(stats, "torch_compile")) if b]
    if torch_best and fastest:
        top = max(torch_best, key=lambda b: b[1])
        out["fastest_torch"] = top[0]
        out["a2c_jax_any_devices_over_fastest_torch"] = fastest[1] / top[1]
    sb3 = best(stats, "sb3_")
    if sb3 and fastest:
        out["a2c_jax_any_devices_over_sb3"] = fastest[1] / sb3[1]
    return out


def variants_agree(variants: list[str], num_envs: int = 8) -> dict[str, float]:
    """|loss of each variant - the eager loss| on one rollout, from the same initial weights: the
    compiled loop computes what the eager one does."""
    eager = NativeTrainer(num_envs, N_STEPS, "cpu", "eager")
    _, _, batch = rollout(eager.model, eager.state, eager.steps, N_STEPS)
    reference = eager.loss_on(batch)
    return {v: abs(NativeTrainer(num_envs, N_STEPS, "cpu", v).loss_on(batch) - reference) for v in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 512, 16384])
    parser.add_argument("--seconds", type=float, default=1.0, help="per timed repeat of each contender")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-gym-envs", type=int, default=512)
    parser.add_argument("--variants", nargs="+", choices=["eager", "compile"], default=["eager", "compile"])
    parser.add_argument("--precision", choices=["float32", "tensorfloat32"], default="float32")
    parser.add_argument("--name", default="cpu-throughput-vs-torch")
    args = parser.parse_args()
    cpu_device_per_core()  # XLA reads it when its backend starts: one device runs as before, `--devices all` splits
    set_precision(args.precision)
    cores = jax.local_device_count() if jax.default_backend() == "cpu" else 1
    agree = variants_agree(args.variants)
    print(f"loss of each PyTorch variant against eager's on one rollout: {agree}", flush=True)
    rows = []
    start = time.perf_counter()
    for n in args.envs:
        print(f"{n} envs:", flush=True)
        stats = time_interleaved(contenders(n, cores, args.max_gym_envs, args.variants), args.seconds, args.repeats)
        rows.append({"num_envs": n, "contenders": stats, "ratios": ratios(stats)})
        print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rows[-1]["ratios"].items()}, flush=True)
        path = write_result(
            args.name,
            {"benchmark": "throughput_vs_torch", "env_id": "CartPole-v1", "n_steps": N_STEPS, "repeats": args.repeats,
             "seconds_per_repeat": args.seconds, "precision": args.precision, "cpu_devices": cores,
             "torch_variants_loss_diff": agree, "rows": rows},
        )  # fmt: skip
    print(f"wrote {path} in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
