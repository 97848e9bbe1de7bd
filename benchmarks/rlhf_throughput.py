"""RLHF throughput: generated tokens/s and A2C updates/s, a2c_jax against the same loop in PyTorch.

Same model size (2 layers, width 64, 4 heads, context 32), same task shapes (prompt 5 tokens,
response 12), same update (see benchmarks/torch_rlhf.py), both sampling with a KV cache. a2c_jax runs its real
`a2c_step` scanned in a compiled chunk, as `a2c-jax rlhf` does; PyTorch runs eager and, where it works
here, with `torch.compile` on the model. Sampling is also timed on its own, with the KV cache and with
full recompute (tokens = batch x 12 positions sampled).

    python -m benchmarks.rlhf_throughput [--batches 16 64 256] [--seconds 3] [--name cpu-rlhf-throughput]
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import torch

from a2c_jax.core.optim import make_optimizer
from a2c_jax.rlhf.config import RLHFConfig
from a2c_jax.rlhf.sampling import make_sampler
from a2c_jax.rlhf.task import sample_prompts
from a2c_jax.rlhf.train import Frozen, a2c_step, init_stage, make_model, scan_chunk
from benchmarks.common import write_result
from benchmarks.torch_rlhf import TorchRLHF
from benchmarks.torch_rlhf import sample as torch_sample
from benchmarks.torch_rlhf import sample_cached as torch_sample_cached


def rate(run: Callable[[], Any], work: float, seconds: float) -> float:
    """work/s of `run()` (blocking): one warm-up call, then repeats for about `seconds`."""
    run()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or calls < 2:
        run()
        calls += 1
    return work * calls / (time.perf_counter() - start)


def jax_rates(batch: int, seconds: float, chunk: int) -> dict[str, float]:
    config = RLHFConfig(batch=batch)
    spec, model = config.spec, make_model(config)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, spec.seq_len), jnp.int32))
    prompts = sample_prompts(jax.random.PRNGKey(1), batch, spec)
    keys = iter(jax.random.split(jax.random.PRNGKey(2), 100000))
    sampled: dict[str, float] = {}
    for kind, kv_cache in (("kv_cache", True), ("full_recompute", False)):
        sampler = jax.jit(make_sampler(model, kv_cache), static_argnums=3)
        start = time.perf_counter()
        jax.block_until_ready(sampler(params, prompts, next(keys), spec.response_len))
        sampled[f"compile_seconds_sample_{kind}"] = time.perf_counter() - start
        sampled[f"tokens_per_second_{kind}"] = rate(
            lambda s=sampler: jax.block_until_ready(s(params, prompts, next(keys), spec.response_len)),
            batch * spec.response_len,
            seconds,
        )
    hparams = config.hparams()
    state = init_stage(params, make_optimizer("adam", hparams, hparams.lr), jax.random.PRNGKey(3), config.beta)
    frozen = Frozen(params, params)
    run = jax.jit(lambda s, f: scan_chunk(a2c_step(model, config, f, hparams), chunk)(s))
    holder = {"state": state}

    def step() -> None:
        holder["state"], metrics = run(holder["state"], frozen)
        jax.block_until_ready(metrics)

    start = time.perf_counter()
    step()
    compile_update = time.perf_counter() - start
    updates = rate(step, chunk, seconds)
    return {
        "tokens_per_second": sampled["tokens_per_second_kv_cache"],
        "updates_per_second": updates,
        **sampled,
        "compile_seconds_update_chunk": compile_update,
    }


def synced(fn: Callable[[], Any]) -> Callable[[], None]:
    """`fn` followed by a CUDA synchronisation when PyTorch runs on a GPU (so timings are complete)."""

    def run() -> None:
        fn()
        if torch.cuda.is_available() and torch.get_default_device().type == "cuda":
            torch.cuda.synchronize()

    return run


def torch_rates(batch: int, seconds: float, compiled: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    loop = TorchRLHF(batch)
    forward = torch.compile(loop.policy) if compiled else loop.policy
    prompts = loop.prompts()
    start = time.perf_counter()
    loop.update(forward)
    warm = time.perf_counter() - start
    cached = rate(synced(lambda: torch_sample_cached(loop.policy, prompts, loop.r, forward)), batch * loop.r, seconds)
    full = rate(synced(lambda: torch_sample(forward, prompts, loop.r)), batch * loop.r, seconds)
    updates = rate(synced(lambda: loop.update(forward)), 1, seconds)
    return {
        "tokens_per_second": cached,
        "tokens_per_second_kv_cache": cached,
        "tokens_per_second_full_recompute": full,
        "updates_per_second": updates,
        "first_call_seconds": warm,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--chunk", type=int, default=10, help="A2C updates per compiled a2c_jax chunk")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--torch-device", default="cpu", help="where PyTorch runs (cpu, cuda)")
    parser.add_argument("--name", default="cpu-rlhf-throughput")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_device(args.torch_device)
    rows = []
    for batch in args.batches:
        row: dict[str, Any] = {"batch": batch, "a2c_jax": jax_rates(batch, args.seconds, args.chunk)}
        row["torch_eager"] = torch_rates(batch, args.seconds, compiled=False)
        if not args.no_compile:
            try:
                row["torch_compile"] = torch_rates(batch, args.seconds, compiled=True)
            except Exception as err:  # inductor needs a C++ toolchain; report what happened
                row["torch_compile"] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
                traceback.print_exc(limit=1)
        torch_rows = [row[k] for k in ("torch_eager", "torch_compile") if "updates_per_second" in row.get(k, {})]
        best = max(r["updates_per_second"] for r in torch_rows)
        row["update_speedup_vs_best_torch"] = row["a2c_jax"]["updates_per_second"] / best
        best_tokens = max(r["tokens_per_second"] for r in torch_rows)
        row["token_speedup_vs_best_torch"] = row["a2c_jax"]["tokens_per_second"] / best_tokens
        rows.append(row)
        print(
            f"batch {batch}: a2c_jax {row['a2c_jax']['updates_per_second']:.1f} updates/s "
            f"{row['a2c_jax']['tokens_per_second']:,.0f} tokens/s; torch eager "
            f"{row['torch_eager']['updates_per_second']:.1f} updates/s {row['torch_eager']['tokens_per_second']:,.0f} "
            f"tokens/s; x{row['update_speedup_vs_best_torch']:.2f} updates, x{row['token_speedup_vs_best_torch']:.2f} "
            "tokens vs the best PyTorch",
            flush=True,
        )
        path = write_result(
            args.name,
            {
                "benchmark": "rlhf_throughput",
                "model": "causal transformer, 2 layers, width 64, 4 heads, 4x MLP; prompt 5, response 12 tokens",
                "torch": torch.__version__,
                "torch_threads": args.threads,
                "torch_device": args.torch_device,
                "torch_compile": not args.no_compile,
                "rows": rows,
            },
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
