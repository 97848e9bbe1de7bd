"""Benchmarks of a2c_jax; each script writes JSON (with the machine named) into results/."""
