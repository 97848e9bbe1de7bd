"""Generalised advantage estimation with SB3-correct handling of time limits.

All inputs are [T, N] (time-major). `next_values[t]` is V of the observation step t reached
before any auto-reset. A terminated step has no future (bootstrap 0); a truncated step was cut by a
time limit and bootstraps from V(final observation); both stop the recursion, since the next row
belongs to a new episode.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: jax.Array | float,
    gae_lambda: jax.Array | float,
) -> tuple[jax.Array, jax.Array]:
    """GAE(lambda) advantages and lambda-returns.

    delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t
    A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},  done = terminated | truncated
    returns = A + values

    Args:
        rewards, values, next_values: float [T, N].
        terminated, truncated: bool [T, N].
        gamma, gae_lambda: scalars (may be traced).

    Returns:
        (advantages [T, N], returns [T, N]).
    """
    chex.assert_rank(rewards, 2)
    chex.assert_equal_shape([rewards, values, next_values, terminated, truncated])
    not_term = 1.0 - terminated.astype(rewards.dtype)
    not_done = 1.0 - jnp.logical_or(terminated, truncated).astype(rewards.dtype)
    deltas = rewards + gamma * not_term * next_values - values
    decay = gamma * gae_lambda * not_done

    def backward(next_adv: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        delta, dec = inputs
        adv = delta + dec * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(rewards[0]), (deltas, decay), reverse=True)
    return advantages, advantages + values
