"""Collect T steps from N environments with one `lax.scan`."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax

from a2c_jax.envs import VecEnv, VecEnvState
from a2c_jax.networks import Params, Policy


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


def rollout(
    policy: Policy,
    params: Params,
    vec_env: VecEnv,
    env_state: VecEnvState,
    obs: jax.Array,
    key: jax.Array,
    num_steps: int,
    gamma: jax.Array,
) -> tuple[VecEnvState, jax.Array, Transition]:
    """Act with the stochastic policy for `num_steps` steps in all N envs.

    Args:
        obs: [N, *obs_shape], the current observations.
        key: consumed here; the caller must not reuse it.
        gamma: discount used by the reward normaliser.

    Returns:
        (env_state after T steps, obs [N, *obs_shape] after T steps, Transition [T, N]).
    """
    chex.assert_shape(obs, (vec_env.num_envs, *vec_env.spec.obs_shape))

    def step(
        carry: tuple[VecEnvState, jax.Array], step_key: jax.Array
    ) -> tuple[tuple[VecEnvState, jax.Array], Transition]:
        state, last_obs = carry
        act_key, env_key = jax.random.split(step_key)
        action = policy.dist.sample(act_key, policy.actor(params, last_obs))
        next_obs, state, reward, terminated, truncated, info = vec_env.step(env_key, state, action, gamma)
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
        return (state, next_obs), transition

    (env_state, obs), traj = jax.lax.scan(step, (env_state, obs), jax.random.split(key, num_steps))
    chex.assert_shape(traj.reward, (num_steps, vec_env.num_envs))
    return env_state, obs, traj
