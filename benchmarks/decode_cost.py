"""Where a decode step of an imported GPT-2 goes: milliseconds per KV-cache step (greedy, and sampled as
`a2c_jax.rlhf.sampling` draws), the draw alone, the LM head's matmul alone, and the machine's memory
read bandwidth (a sum over 256 MB), the floor for a step that reads every weight once.

    python -m benchmarks.decode_cost [--model gpt2-small-shaped] [--batch 8] [--steps 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import write_result
from benchmarks.hf_rlhf import SHAPES, write_checkpoint


def best_ms(run: Callable[[], Any], repeats: int = 5) -> float:
    """The fastest of `repeats` blocking calls after one warm-up, in ms."""
    jax.block_until_ready(run())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def decode_ms(model: Any, batch: int, steps: int, sampled: bool) -> float:
    """ms per decode step: `steps` single-token calls against a KV cache in one `lax.scan`."""
    from a2c_jax.core.distributions import categorical_sample

    decoder = model.module.clone(decode=True)
    buffer = jnp.zeros((batch, model.config.max_len), jnp.int32)
    cache = jax.tree.map(jnp.zeros_like, jax.eval_shape(decoder.init, jax.random.PRNGKey(0), buffer)["cache"])

    def body(carry: tuple[Any, jax.Array], key: jax.Array) -> tuple[tuple[Any, jax.Array], None]:
        cache, token = carry
        variables = {"params": model.params, "cache": cache}
        (logits, _), mutated = decoder.apply(variables, token[:, None], mutable=["cache"])
        logits = logits[:, 0]
        token = categorical_sample(key, logits) if sampled else jnp.argmax(logits, -1)
        return (mutated["cache"], token.astype(jnp.int32)), None

    run = jax.jit(lambda c, k: jax.lax.scan(body, (c, jnp.zeros(batch, jnp.int32)), jax.random.split(k, steps))[0][1])
    return best_ms(lambda: run(cache, jax.random.PRNGKey(1))) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SHAPES), default="gpt2-small-shaped")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    from a2c_jax.rlhf.hf import load_pretrained

    with tempfile.TemporaryDirectory() as tmp:
        model = load_pretrained(write_checkpoint(Path(tmp) / "model", args.model), tokenizer=False)
    weights = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(model.params))
    vocab, width = model.config.vocab_size, model.config.width
    x = jnp.ones((args.batch, width), jnp.float32)
    head = jnp.ones((vocab, width), jnp.float32)
    block = jnp.ones((256 << 20) // 4, jnp.float32)
    logits = jax.random.normal(jax.random.PRNGKey(0), (args.batch, vocab))
    from a2c_jax.core.distributions import categorical_sample

    draw, total, matmul = jax.jit(categorical_sample), jax.jit(jnp.sum), jax.jit(lambda a, w: a @ w.T)
    read_ms = best_ms(lambda: total(block))
    rows = {
        "greedy_step_ms": decode_ms(model, args.batch, args.steps, sampled=False),
        "sampled_step_ms": decode_ms(model, args.batch, args.steps, sampled=True),
        "draw_ms": best_ms(lambda: draw(jax.random.PRNGKey(2), logits)),
        "lm_head_matmul_ms": best_ms(lambda: matmul(x, head)),
        "memory_read_gb_per_s": block.nbytes / read_ms * 1e-6,
        "weights_bytes": weights,
    }
    rows["weights_read_floor_ms"] = weights / rows["memory_read_gb_per_s"] * 1e-6
    for key, value in rows.items():
        print(f"{key}: {value:,.2f}")
    path = write_result(args.name or f"cpu-decode-cost-{args.model}", {"benchmark": "decode_cost",
                        "model": args.model, "batch": args.batch, "steps": args.steps, **rows})  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
