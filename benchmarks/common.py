"""Machine description and JSON output shared by the benchmark scripts."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(os.environ["RESULTS_DIR"]) if os.environ.get("RESULTS_DIR") else Path(__file__).parent / "results"
"""Where results files go: benchmarks/results, or $RESULTS_DIR (a test of benchmarks/gpu.sh writes elsewhere)."""


def machine() -> dict[str, Any]:
    """CPU model, core count, memory, OS and library versions of this machine."""
    import jax

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "gpu_driver": gpu_driver() if jax.default_backend() == "gpu" else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
        "torch_matmul_precision": torch_precision(),
        "date": time.strftime("%Y-%m-%d"),
        **versions(),
    }


LIBRARIES = ("jaxlib", "flax", "optax", "chex", "gymnax", "torch", "stable-baselines3", "gymnasium", "brax", "craftax")


def versions() -> dict[str, str]:
    """Installed versions of the libraries a benchmark may use (without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in LIBRARIES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def torch_precision() -> str | None:
    """PyTorch's float32 matmul precision when this process has imported it ('highest' is IEEE)."""
    torch = sys.modules.get("torch")
    return str(torch.get_float32_matmul_precision()) if torch is not None else None


def gpu_driver() -> str | None:
    """The NVIDIA driver version, from nvidia-smi."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


@functools.cache
def provenance(root: Path | None = None) -> dict[str, Any]:
    """The commit the benchmark ran at (with '+dirty' when the tree had uncommitted changes to tracked
    files, or Python files git does not track yet: a benchmark run from a new file is not the commit's)
    and its exact command line, so a row can be re-run. Taken once, when this module is imported (the
    benchmark's start): a file written later in a long run still names the code it ran. `root`: a
    directory of the repository (default: this one's)."""

    def git(*args: str) -> str:
        try:
            where = root or Path(__file__).parent
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=where).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD").strip() or None
    changed = git("status", "--porcelain", "--untracked-files=no").strip()
    new_code = git("ls-files", "--others", "--exclude-standard", "--full-name", ":(top,glob)**/*.py").strip()
    if commit and (changed or new_code):
        commit += "+dirty"
    command = ["python", "-m", f"benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]
    return {"commit": commit, "command": " ".join(command)}


def set_precision(precision: str) -> None:
    """Matmul precision on both sides: 'float32' (IEEE) or 'tensorfloat32' (TF32 where a GPU has it),
    for JAX and, when it is installed, PyTorch."""
    import jax

    jax.config.update("jax_default_matmul_precision", precision)
    try:
        import torch
    except ImportError:
        return
    torch.set_float32_matmul_precision("highest" if precision == "float32" else "high")


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write RESULTS/name.json with the machine description and the run's provenance added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **provenance(), **payload}, indent=2) + "\n")
    return path


def earlier_rows(name: str) -> Any:
    """The `rows` of RESULTS/name.json written by an earlier run, or None: scripts that measure one row at
    a time keep the other rows of their file."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text())["rows"] if path.exists() else None


provenance()  # at the start of the run
