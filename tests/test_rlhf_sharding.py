"""The A2C-RLHF update over 4 devices (forced CPU devices in a subprocess): data parallel, data x fsdp
and fully sharded layouts give the one-device result to float32 reduction order, with the parameters
sharded as asked; the layout's bad settings are one clear line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a2c_jax.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sharded_rlhf_updates_equal_the_one_device_update():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "_rlhf_sharding_check.py")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    for name in ("data4", "data2_fsdp2", "fsdp4"):
        row = report[name]
        assert row["devices"] == 4, (name, row)
        # the first update (loss, gradient norm ~3.5, KL) differs only by float32 reduction order, which
        # the advantage whitening scales up (4.8e-5 here); later ones by that rounding carried through
        # Adam, whose first steps move a near-zero gradient component by about lr (3e-3) whichever its
        # sign: 5.6e-3 in the parameters after 4 updates, 5.6e-4 in the metrics here
        assert row["first_update_diff"] < 5e-4, (name, row)
        assert row["metrics_diff"] < 1e-2 and row["params_diff"] < 4 * 3e-3 * 4, (name, row)
        assert row["eval_tokens_equal"], (name, row)
    assert report["data4"]["sharded_leaves"] == 0  # data parallel: parameters replicated
    assert report["fsdp4"]["sharded_leaves"] >= report["data2_fsdp2"]["sharded_leaves"] > 0


def test_rlhf_layouts_refuse_what_cannot_split():
    from a2c_jax.rlhf.sharding import rlhf_layout

    assert rlhf_layout(1, 1, 8) is None
    with pytest.raises(ConfigError, match="devices=64 is invalid: only"):
        rlhf_layout(64, 1, 64)
    with pytest.raises(ConfigError, match="fsdp=3 is invalid"):
        rlhf_layout(1, 3, 8)


@pytest.mark.slow
def test_the_rlhf_command_splits_updates_over_devices(tmp_path):
    """`a2c-jax rlhf --devices 2 --fsdp 2` runs the chain with its A2C updates fully sharded over two
    (forced CPU) devices; a batch the devices do not divide is one line and exit 2, nothing written."""
    small = ["--width", "32", "--heads", "2", "--ref-steps", "4", "--rm-pairs", "16", "--rm-steps", "4",
             "--updates", "4", "--log-points", "2", "--eval-prompts", "8", "--batch", "8", "--quiet",
             "--no-compile-cache"]  # fmt: skip
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "a2c_jax.cli", "rlhf", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip

    done = cli(*small, "--devices", "2", "--fsdp", "2", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["members"][0]["diverged_at"] is None and np.isfinite(summary["members"][0]["final"]["gold"])
    bad = cli(*small, "--devices", "2", "--batch", "3", "--out", str(tmp_path / "bad"))
    err = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(err) == 1 and "batch=3 does not divide over 2 devices" in err[0], err
    assert not (tmp_path / "bad").exists()
