"""Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=4 by test_rlhf_sharding.py:
the A2C-RLHF stage (a population of two betas, 4 updates) on one device and over 4 devices in three
layouts; prints one JSON object of measurements."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from a2c_jax.rlhf.config import RLHFConfig
from a2c_jax.rlhf.imported import Inputs
from a2c_jax.rlhf.run import A2CStage
from a2c_jax.rlhf.sharding import FSDP, rlhf_layout
from a2c_jax.rlhf.train import Frozen, digits, make_model


def max_diff(a: object, b: object) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))  # fmt: skip


def main() -> None:
    config = RLHFConfig(width=32, heads=2, prompt_digits=3, response_len=6, context=10, batch=8, updates=4,
                        log_points=4, eval_prompts=8, lr=3e-3)  # fmt: skip
    model = make_model(config)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, config.spec.seq_len), jnp.int32))
    frozen = Frozen(params, jax.tree.map(lambda x: x * 1.5 + 0.1, params))  # a reward head that is not zero
    results, specs = {}, {}
    for name, (devices, fsdp) in {"one": (1, 1), "data4": (4, 1), "data2_fsdp2": (4, 2), "fsdp4": (4, 4)}.items():
        layout = rlhf_layout(devices, fsdp, config.batch)
        inputs = Inputs(model, frozen, digits(config.spec), {})
        stage = A2CStage(config, inputs, (0.02, 0.1), jax.random.PRNGKey(5), layout=layout)
        with tempfile.TemporaryDirectory() as out:
            state, _, after, _ = stage.run(Path(out), jax.random.PRNGKey(6), False, True, lambda: 0, "resume")
            lines = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
        per_update = [[line[k] for k in ("loss", "grad_norm", "k1")] for line in lines if "loss" in line]
        results[name] = (jax.device_get(state.params), per_update, after)
        leaves = jax.tree.leaves(state.params)
        specs[name] = {
            "devices": len(leaves[0].sharding.device_set),
            "sharded_leaves": sum(FSDP in str(getattr(x.sharding, "spec", "")) for x in leaves),
            "leaves": len(leaves),
        }
    one = results["one"]
    report = {
        name: {
            "params_diff": max_diff(one[0], got[0]),
            "first_update_diff": max_diff(one[1][:2], got[1][:2]),  # both betas' first update
            "metrics_diff": max_diff(one[1], got[1]),
            "eval_tokens_equal": all(
                np.array_equal(a["tokens"], b["tokens"]) for a, b in zip(one[2], got[2], strict=True)
            ),
            **specs[name],
        }
        for name, got in results.items()
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
