"""Every GPU measurement in one run: a2c_jax throughput against n_envs (to 2^20), populations of
CartPole agents trained at once (to 1024 and beyond), the MinAtar rows of the returns table at the
presets' full budgets, and the torch-native baseline on CUDA.
Writes benchmarks/results/<name>-*.json. Runs on a CPU too (tiny sizes) so it can be tested anywhere.

    python -m benchmarks.gpu_suite --envs 1024 16384 131072 1048576 --population 64 256 1024 4096 \\
        --torch-envs 1024 16384 131072 1048576 --name gpu
"""

from __future__ import annotations

import argparse
import dataclasses

from a2c_jax.config import preset
from a2c_jax.core.train import make_train
from benchmarks.common import set_precision, write_result
from benchmarks.returns_table import ROWS, describe, run_row
from benchmarks.sweep_population import time_population
from benchmarks.throughput import measure

SECTIONS = ("throughput", "population", "minatar", "torch")


def throughput(args: argparse.Namespace) -> None:
    """a2c_jax steps/s against n_envs (CartPole, SB3's settings); the file is rewritten after each row."""
    from benchmarks.profile import update_cost
    from benchmarks.throughput import sized

    rows = []
    for n in args.envs:
        config, hparams = sized(n, None)
        cost = update_cost(config, hparams.as_arrays())  # XLA's FLOPs and bytes, the hot loops' kernel counts
        rows.append(measure(n, args.seconds, repeats=args.repeats) | cost | {"precision": args.precision})
        rate = rows[-1]["steps_per_second"]
        print(f"a2c_jax n_envs {n}: {rate:,.0f} steps/s, {cost['flops_per_env_step']:,.0f} FLOP and "
              f"{cost['bytes_per_env_step']:,.0f} bytes per env step ({rate * cost['flops_per_env_step'] / 1e9:,.1f} "
              f"GFLOP/s, {rate * cost['bytes_per_env_step'] / 1e9:,.1f} GB/s)", flush=True)  # fmt: skip
        path = write_result(f"{args.name}-throughput", {"benchmark": "throughput", "rows": rows})
    print(f"wrote {path}")


def population(args: argparse.Namespace) -> None:
    """Env steps/s of populations of CartPole agents (zoo preset) trained in one program."""
    config, _ = preset("zoo", "CartPole-v1")
    config = dataclasses.replace(config, total_timesteps=args.population_steps)
    train = make_train(config)
    steps = config.num_updates * config.batch_size
    pop = []
    for p in args.population:
        c, r = time_population(train, p, config.num_envs)
        pop.append({"population": p, "compile_seconds": c, "run_seconds": r, "env_steps_per_second": p * steps / r})
        print(f"population {p}: {p * steps / r:,.0f} env steps/s ({r:.1f}s)", flush=True)
        payload = {"benchmark": "population", "config": dataclasses.asdict(config), "rows": pop}
        path = write_result(f"{args.name}-population", payload)
    print(f"wrote {path}")


def minatar(args: argparse.Namespace) -> None:
    """The MinAtar rows of the returns table; the file is rewritten after each game."""
    rows = {}
    for env_id in [e for e in ROWS if e.endswith("MinAtar") and (not args.minatar_games or e in args.minatar_games)]:
        rows[env_id] = row = run_row(env_id, args.minatar_seeds, args.minatar_steps or None)
        print(describe(env_id, row), flush=True)
        write_result(f"{args.name}-returns-minatar", {"benchmark": "returns_table", "rows": rows})


def torch_native(args: argparse.Namespace) -> None:
    """The same A2C in plain PyTorch (on CUDA when there is one) against n_envs, every variant
    (`benchmarks.torch_a2c.NativeTrainer`: eager without host syncs, torch.compile with CUDA graphs,
    the whole iteration captured as one CUDA graph) built once, warmed up and timed in interleaved
    repeats beside a2c_jax at the same size; a variant that fails here is recorded with its error."""
    try:
        import torch

        from benchmarks.throughput import prepare_a2c_jax, sized
        from benchmarks.timing import Contender, time_interleaved
        from benchmarks.torch_a2c import NativeTrainer
    except ImportError as err:
        print(f"torch baseline skipped: {err}")
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    variants = ["eager", "compile", "cuda_graph"] if device == "cuda" else ["eager"]
    trows = []
    for n in args.torch_envs:
        config, hparams = sized(n, 5)
        contenders = [Contender("a2c_jax", lambda c=config, h=hparams: prepare_a2c_jax(c, h), n * 5)]
        contenders += [
            Contender(f"torch_{v}", lambda v=v, n=n: NativeTrainer(n, 5, device, v).run, n * 5, info={"variant": v})
            for v in variants
        ]
        print(f"{n} envs:", flush=True)
        stats = time_interleaved(contenders, args.seconds, args.repeats)
        trows.append({"num_envs": n, "device": device, "contenders": stats})
        payload = {"benchmark": "torch_native", "precision": args.precision, "rows": trows}
        path = write_result(f"{args.name}-torch-native", payload)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="*", default=[1024, 16384, 131072, 1048576])
    parser.add_argument("--population", type=int, nargs="*", default=[64, 256, 1024, 4096])
    parser.add_argument("--population-steps", type=int, default=100_000, help="env steps per member")
    parser.add_argument("--torch-envs", type=int, nargs="*", default=[1024, 16384, 131072, 1048576])
    parser.add_argument("--seconds", type=float, default=3.0, help="per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", choices=["float32", "tensorfloat32"], default="float32",
                        help="matmul precision on both sides (JAX's default on recent GPUs is TF32)")  # fmt: skip
    parser.add_argument("--minatar-seeds", type=int, default=5)
    parser.add_argument("--minatar-steps", type=int, default=0, help="env steps per seed; 0: the preset's")
    parser.add_argument("--minatar-games", nargs="*", default=[], help="MinAtar env ids (default: all four)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--name", default="gpu")
    args = parser.parse_args()
    set_precision(args.precision)
    sections = {"throughput": throughput, "population": population, "minatar": minatar, "torch": torch_native}
    for name in args.only:
        sections[name](args)


if __name__ == "__main__":
    main()
