"""`python -m a2c_jax.cli ...`: the `a2c-jax` command."""

from a2c_jax._entry import run

run()
