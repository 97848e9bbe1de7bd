"""The process-wide settings of the `a2c-jax` command, made by one explicit call at start-up.

Nothing in the library changes the process when imported: no lowering is registered, no logger level
or warning filter is touched. `configure_process()` does both, once, for the CLI (and the benchmarks);
a library user who wants the same calls it before tracing any program:

    import a2c_jax.runs.process
    a2c_jax.runs.process.configure_process()
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping

from a2c_jax.config import ConfigError

_LOGGERS = ("absl", "orbax", "orbax.checkpoint")
"""orbax logs every save at INFO level (and failed reads at ERROR); the commands print their own messages."""


def configure_process(threefry: bool = True, quiet_logs: bool = True) -> None:
    """Switch on the command's process-wide settings (calling it again changes nothing more).

    - `threefry`: JAX's Threefry-2x32 lowered as straight-line code on the CPU (`core.prng`: the same
      random bits, fewer kernels per draw; A2C_JAX_ROLLED_THREEFRY=1 keeps JAX's own lowering).
    - `quiet_logs`: absl's and orbax's loggers at CRITICAL (orbax logs every save). (A study quiets
      Optuna itself, `population.study.quiet_optuna`, when the command starts one.)
    """
    if threefry:
        from a2c_jax.core.prng import lower_threefry_unrolled_on_cpu

        lower_threefry_unrolled_on_cpu()
    if quiet_logs:
        for name in _LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)


SAFE_XLA_FLAGS = ("--xla_force_host_platform_device_count",)
"""XLA flags the commands and tests set themselves: no need to check them in a child process."""


def check_xla_flags(environ: Mapping[str, str] = os.environ) -> None:
    """ConfigError naming XLA_FLAGS when XLA would refuse it. XLA parses the variable when JAX starts and
    ends the process on a flag it does not know (a raw fatal line, or a dump of every flag), which
    Python cannot catch; so flags other than the commands' own are tried first in a child process
    (about a second, only then)."""
    flags = environ.get("XLA_FLAGS", "").split()
    if all(flag.split("=", 1)[0] in SAFE_XLA_FLAGS for flag in flags):
        return
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices()"],
        env={**environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        lines = [line for line in probe.stderr.splitlines() if "XLA_FLAGS" in line or "flag" in line.lower()]
        reason = (lines or probe.stderr.strip().splitlines() or ["XLA did not start"])[0]
        reason = reason.split("] ", 1)[-1]  # drop XLA's log prefix (level, time, thread, file)
        raise ConfigError(f"XLA_FLAGS={environ.get('XLA_FLAGS')!r} is invalid: {reason}")


def check_backend(environ: Mapping[str, str] = os.environ) -> None:
    """ConfigError naming JAX_PLATFORMS when the platform it asks for cannot start on this machine (JAX
    would fail with an internal assertion); other start-up failures are left to JAX."""
    import jax

    try:
        jax.devices()
    except Exception as err:
        platforms = environ.get("JAX_PLATFORMS") or environ.get("JAX_PLATFORM_NAME")
        if not platforms:
            raise
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ConfigError(
            f"JAX_PLATFORMS={platforms!r} is invalid: this machine cannot start it ({reason}); unset it, or name "
            "a platform it has (cpu)"
        ) from None
