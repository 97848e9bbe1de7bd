"""The process-wide settings of the `a2c-jax` command, made by one explicit call at start-up.

Nothing in the library changes the process when imported: no lowering is registered, no logger level
or warning filter is touched. `configure_process()` does both, once, for the CLI (and the benchmarks);
a library user who wants the same calls it before tracing any program:

    import a2c_jax.runs.process
    a2c_jax.runs.process.configure_process()
"""

from __future__ import annotations

import logging

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
