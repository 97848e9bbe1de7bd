"""Adapters of environment suites to the env protocol (see `a2c_jax.envs`), one file per suite."""
