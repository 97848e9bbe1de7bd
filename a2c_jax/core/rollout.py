"""Collect T steps from N environments with one `lax.scan`."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from a2c_jax.core.distributions import gsde_weights
from a2c_jax.core.networks import Carry, Params, Policy, reset_carry
from a2c_jax.envs import VecEnv, VecEnvState


class Transition(NamedTuple):
    """A rollout, every field with leading axes [T, N].

    obs [T, N, *obs_shape] is the observation the action was taken in; final_obs is the
    observation the step reached before any auto-reset (equal to the next obs unless the episode
    ended), so V(final_obs) bootstraps every step that was not terminated. action is [T, N]
    (discrete) or [T, N, D] (continuous, unclipped). reward is the (possibly normalised) reward the
    agent learns from; episode_return / episode_length are the raw totals of episodes that ended at
    that step, else 0.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array

    @property
    def done(self) -> jax.Array:
        """[T, N]: the episode ended at this step (terminated or truncated)."""
        return jnp.logical_or(self.terminated, self.truncated)


def rollout(
    policy: Policy,
    params: Params,
    vec_env: VecEnv,
    env_state: VecEnvState,
    obs: jax.Array,
    carry: Carry,
    key: jax.Array,
    num_steps: int,
    gamma: jax.Array,
) -> tuple[VecEnvState, jax.Array, Carry, Transition]:
    """Act with the stochastic policy for `num_steps` steps in all N envs.

    Args:
        obs: [N, *obs_shape], the current observations.
        carry: the policy's hidden state before obs (leaves [N, ...]; () for feed-forward policies);
            it is zeroed in each env whose episode ends, so episodes never share memory.
        key: consumed here; the caller must not reuse it.
        gamma: discount used by the reward normaliser.

    Returns:
        (env_state, obs [N, *obs_shape] and carry after T steps, Transition [T, N]).
    """
    chex.assert_shape(obs, (vec_env.num_envs, *vec_env.spec.obs_shape))
    explore = policy.dist.explore if policy.sde_sample_freq != 0 else None
    sde = explore is not None
    # gSDE: one exploration matrix per env, drawn at the rollout's start and every sde_sample_freq steps
    weights_shape = jax.eval_shape(policy.act, params, carry, obs)[1].std.shape if sde else (0,)
    weights = jnp.zeros((vec_env.num_envs, *weights_shape)) if sde else jnp.zeros(())

    def step(
        loop: tuple[VecEnvState, jax.Array, Carry, jax.Array], inputs: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[VecEnvState, jax.Array, Carry, jax.Array], Transition]:
        state, last_obs, hidden, weights = loop
        t, step_key = inputs
        act_key, env_key = jax.random.split(step_key)
        hidden, pi = policy.act(params, hidden, last_obs)
        if explore is not None:
            redraw = (t == 0) | ((policy.sde_sample_freq > 0) & (t % max(policy.sde_sample_freq, 1) == 0))
            fresh = gsde_weights(act_key, jax.lax.stop_gradient(pi.std), vec_env.num_envs)
            weights = jnp.where(redraw, fresh, weights)
            action = explore(pi, weights)
        else:
            action = policy.dist.sample(act_key, pi)
        next_obs, state, reward, terminated, truncated, info = vec_env.step(env_key, state, action, gamma)
        hidden = reset_carry(hidden, jnp.logical_or(terminated, truncated))
        transition = Transition(
            obs=last_obs,
            action=action,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=info.final_obs,
            episode_return=info.episode_return,
            episode_length=info.episode_length,
        )
        return (state, next_obs, hidden, weights), transition

    loop = (env_state, obs, carry, weights)
    steps = (jnp.arange(num_steps), jax.random.split(key, num_steps))
    (env_state, obs, carry, _), traj = jax.lax.scan(step, loop, steps)
    chex.assert_shape(traj.reward, (num_steps, vec_env.num_envs))
    return env_state, obs, carry, traj
