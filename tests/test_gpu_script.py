"""`SMALL=1 bash benchmarks/gpu.sh`: the prepared GPU run, every section end to end in tiny shapes on
this CPU, so the script a short GPU slot depends on is known to work before the slot."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_script_runs_every_section_in_small_shapes(tmp_path):
    for package in ("gymnax", "craftax", "brax", "torch"):
        pytest.importorskip(package)
    if shutil.which("bash") is None:
        pytest.skip("no bash on this machine")
    env = {**os.environ, "SMALL": "1", "RESULTS_DIR": str(tmp_path), "NAME": "small", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(["bash", "benchmarks/gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    sections = [line for line in log.splitlines() if line.startswith("== ") and "(limit" in line]
    assert len(sections) == 6, log[-3000:]
    assert "failed" not in log and "stopped at its limit" not in log, log[-3000:]
    written = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("small-*.json")}
    assert sorted(written) == [
        "small-returns-minatar.json", "small-tf32-throughput.json", "small-throughput-brax.json",
        "small-throughput-craftax.json", "small-throughput.json", "small-torch-native.json",
    ]  # fmt: skip
    for result in written.values():
        assert result["commit"] and result["command"].startswith("python -m benchmarks.")
    for name, precision in (("small-throughput.json", "float32"), ("small-tf32-throughput.json", "tensorfloat32")):
        (row,) = written[name]["rows"]
        assert row["precision"] == precision and row["steps_per_second"] > 0
        # an SB3-sized CartPole update: two [64, 64] MLPs forward and backward, about 75k FLOP per env step
        assert 2e4 < row["flops_per_env_step"] < 3e5 and row["bytes_per_env_step"] > 0
        assert row["hot_loop_kernels"] and row["hot_loop_kernels"][0]["kernels"] > 0
    craftax = written["small-throughput-craftax.json"]["rows"][0]
    assert craftax["preset"] == "default" and craftax["hidden_sizes"] == [512, 512, 512]
    assert sorted(written["small-returns-minatar.json"]["rows"]) == ["Breakout-MinAtar", "SpaceInvaders-MinAtar"]
    torch_row = written["small-torch-native.json"]["rows"][0]
    assert {"a2c_jax", "torch_eager"} <= set(torch_row["contenders"])


def test_a_results_file_names_its_commit_dirty_when_the_code_was_not_committed(tmp_path):
    """`benchmarks.common.provenance`: the commit alone for a clean tree; '+dirty' for a changed tracked
    file or a Python file git does not track yet (a benchmark run from a new module); an untracked
    results file leaves it clean."""
    from benchmarks.common import provenance as cached

    provenance = cached.__wrapped__  # benchmarks take it once, at their start; here each state anew
    if shutil.which("git") is None:
        pytest.skip("no git on this machine")

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True, timeout=60)  # fmt: skip

    git("init", "-q")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "a.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "one")
    head = provenance(tmp_path / "bench")["commit"]
    assert head and len(head) == 40
    (tmp_path / "bench" / "result.json").write_text("{}")
    assert provenance(tmp_path / "bench")["commit"] == head
    (tmp_path / "bench" / "new.py").write_text("y = 2\n")
    assert provenance(tmp_path)["commit"] == head + "+dirty"
    (tmp_path / "bench" / "new.py").unlink()
    (tmp_path / "bench" / "a.py").write_text("x = 2\n")
    assert provenance(tmp_path / "bench")["commit"] == head + "+dirty"
