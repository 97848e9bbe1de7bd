"""RLHF throughput: generated tokens/s and A2C updates/s, a2c_jax against the same loop in PyTorch.

Same model size (2 layers, width 64, 4 heads, context 32), same task shapes (prompt 5 tokens,
response 12), same update (see benchmarks/torch_rlhf.py), both sampling with a KV cache. a2c_jax runs its real
`a2c_step` scanned in a compiled chunk, as `a2c-jax rlhf` does; PyTorch runs eager and, where it works
here, with `torch.compile` on the model. Sampling is also timed on its own, with the KV cache and with
full recompute (tokens = batch x 12 positions sampled).

    python -m benchmarks.rlhf_throughput [--batches 16 64 256] [--seconds 3] [--name cpu-rlhf-throughput]

With `--model gpt2-small-shaped` (or the smoke shape gpt2-tiny) it times a Hugging Face-shaped model
instead (benchmarks/hf_rlhf.py): a2c_jax's imported GPT-2 against `transformers`' own, sampling and
whole A2C updates, one call per repeat, the repeats interleaved:

    python -m benchmarks.rlhf_throughput --model gpt2-small-shaped [--batch 8] [--prompt-len 128]
        [--response-len 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
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


def hf_main(args: argparse.Namespace) -> None:
    """`--model SHAPE`: sampling tokens/s and updates/s of both sides on one random checkpoint."""
    import tempfile
    from pathlib import Path

    from benchmarks.hf_rlhf import SHAPES, Workload, jax_contenders, torch_contenders, write_checkpoint
    from benchmarks.timing import Contender, time_calls

    work = Workload(args.batch, args.prompt_len, args.response_len)
    with tempfile.TemporaryDirectory() as root:
        path = write_checkpoint(Path(root) / "model", args.model)
        jax_side, torch_side = jax_contenders(path, work), torch_contenders(path, work)
        print(f"{args.model}: sampling {work.batch} x {work.response} tokens after {work.prompt}-token prompts")
        sampling = time_calls(
            [Contender("a2c_jax_kv_cache", jax_side["sample"], work.tokens),
             Contender("torch_loop", torch_side["sample_loop"], work.tokens, args.threads),
             Contender("torch_generate", torch_side["sample_generate"], work.tokens, args.threads)],
            args.repeats,
        )  # fmt: skip
        print(f"{args.model}: whole A2C updates (sampling included), batch {work.batch}")
        updates = time_calls(
            [Contender("a2c_jax", jax_side["update"], 1),
             Contender("torch_eager", torch_side["update"], 1, args.threads)],
            args.repeats,
        )  # fmt: skip
    best_sampler = max(sampling[k]["median"] for k in ("torch_loop", "torch_generate") if "median" in sampling[k])
    summary = {
        "token_speedup_vs_best_torch": sampling["a2c_jax_kv_cache"]["median"] / best_sampler,
        "update_speedup_vs_torch": updates["a2c_jax"]["median"] / updates["torch_eager"]["median"],
    }
    print(f"a2c_jax vs PyTorch: x{summary['token_speedup_vs_best_torch']:.2f} tokens/s (best sampler), "
          f"x{summary['update_speedup_vs_torch']:.2f} updates/s")  # fmt: skip
    path = write_result(
        args.name or f"cpu-rlhf-throughput-{args.model}",
        {
            "benchmark": "rlhf_throughput",
            "model": args.model,
            "model_config": SHAPES[args.model],
            "workload": dataclasses.asdict(work),
            "torch": torch.__version__,
            "torch_threads": args.threads,
            "sampling_tokens_per_second": sampling,
            "updates_per_second": updates,
            **summary,
        },
    )
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits", help="digits (the built-in model), gpt2-small-shaped, gpt2-tiny")
    parser.add_argument("--batch", type=int, default=8, help="with --model: prompts per update")
    parser.add_argument("--prompt-len", type=int, default=128, help="with --model: prompt tokens")
    parser.add_argument("--response-len", type=int, default=128, help="with --model: sampled tokens per response")
    parser.add_argument("--repeats", type=int, default=3, help="with --model: timed calls per contender")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--chunk", type=int, default=10, help="A2C updates per compiled a2c_jax chunk")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--torch-device", default="cpu", help="where PyTorch runs (cpu, cuda)")
    parser.add_argument("--name", default="", help="results file name (default cpu-rlhf-throughput[-MODEL])")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model != "digits":
        hf_main(args)
        return
    args.name = args.name or "cpu-rlhf-throughput"
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
