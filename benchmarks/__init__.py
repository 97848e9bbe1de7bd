"""Benchmarks of a2c_jax; each script writes JSON (with the machine named) into results/.

The benchmarks run with the command's process-wide settings (the CPU's Threefry lowering, quiet
orbax logs), switched on here as `a2c-jax` switches them on at start-up.
"""

from a2c_jax.runs.process import configure_process

configure_process()
