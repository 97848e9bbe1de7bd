"""Vectorised evaluation episodes with fixed shapes (one while_loop over time, vmapped envs)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from a2c_jax.config import A2CConfig
from a2c_jax.core.networks import Carry, Params
from a2c_jax.core.train import Agent, TrainState, as_agent, jit_once
from a2c_jax.envs import RunningMeanStd, VecEnvState


class EvalResult(NamedTuple):
    """Per-episode raw return [E] and length [E]."""

    returns: jax.Array
    lengths: jax.Array


def evaluate(
    agent: Agent,
    params: Params,
    obs_rms: RunningMeanStd,
    key: jax.Array,
    num_episodes: int,
    greedy: bool = True,
) -> EvalResult:
    """Run `num_episodes` full episodes in parallel and return their raw returns and lengths.

    Observations are normalised with the frozen training statistics `obs_rms` when the config
    normalises observations. Greedy takes the distribution's mode; otherwise actions are sampled.
    Each episode counts until its first terminated or truncated step (the env's time limit).
    """
    policy = agent.policy
    vec = agent.vec_env.for_evaluation(num_episodes)
    reset_key, key = jax.random.split(key)
    obs, env_state = vec.reset(reset_key, obs_rms)
    zeros = jnp.zeros((num_episodes,), jnp.float32)
    active = jnp.ones((num_episodes,), bool)
    max_steps = vec.spec.max_episode_steps + 1

    def cond(loop: tuple) -> jax.Array:
        t, active = loop[0], loop[3]
        return jnp.logical_and(t < max_steps, jnp.any(active))

    def body(loop: tuple) -> tuple:
        t, env_state, obs, active, returns, lengths, key, hidden = loop
        key, act_key, step_key = jax.random.split(key, 3)
        hidden, pi = policy.act(params, hidden, obs)
        action = policy.dist.mode(pi) if greedy else policy.dist.sample(act_key, pi)
        obs, env_state, reward, terminated, truncated, _ = vec.step(step_key, env_state, action, jnp.float32(1.0))
        returns = returns + jnp.where(active, reward, 0.0)
        lengths = lengths + active.astype(jnp.int32)
        active = jnp.logical_and(active, jnp.logical_not(jnp.logical_or(terminated, truncated)))
        return t + 1, env_state, obs, active, returns, lengths, key, hidden

    lengths = jnp.zeros((num_episodes,), jnp.int32)
    init = (jnp.int32(0), env_state, obs, active, zeros, lengths, key, policy.initial_carry(num_episodes))
    out = jax.lax.while_loop(cond, body, init)
    return EvalResult(out[4], out[5])


evaluate_jit = jit_once(evaluate, static_argnums=(0, 4, 5))
"""`evaluate` compiled once per (agent, num_episodes, greedy), as a run-once program."""


def evaluate_final(agent: Agent, state: TrainState, seed_key: jax.Array, num_episodes: int) -> EvalResult:
    """The greedy evaluation every entry point reports after training (train, sweep, PBT): episodes
    drawn with fold_in(seed_key, 1), observations normalised by the state's frozen statistics."""
    return evaluate(agent, state.params, state.env_state.obs_rms, jax.random.fold_in(seed_key, 1), num_episodes)


evaluate_final_jit = jit_once(evaluate_final, static_argnums=(0, 3))


def record_episode(
    agent: Agent | A2CConfig, params: Params, obs_rms: RunningMeanStd, key: jax.Array
) -> tuple[list, list[float]]:
    """One greedy episode stepped from the host, keeping every env state (for rendering).

    Returns (states, rewards): the env state before each step (unbatched), and that step's reward.
    """
    agent = as_agent(agent)
    vec = agent.vec_env.for_evaluation(1)

    @jax.jit
    def act_and_step(state: VecEnvState, obs: jax.Array, hidden: Carry, step_key: jax.Array) -> tuple:
        hidden, pi = agent.policy.act(params, hidden, obs)
        return *vec.step(step_key, state, agent.policy.dist.mode(pi), jnp.float32(1.0)), hidden

    key, reset_key = jax.random.split(key)
    obs, state = vec.reset(reset_key, obs_rms)
    hidden = agent.policy.initial_carry(1)
    states, rewards = [], []
    for _ in range(vec.spec.max_episode_steps + 1):
        key, step_key = jax.random.split(key)
        states.append(jax.tree.map(lambda x: x[0], state.inner))
        obs, state, reward, terminated, truncated, _, hidden = act_and_step(state, obs, hidden, step_key)
        rewards.append(float(reward[0]))
        if bool(terminated[0]) or bool(truncated[0]):
            break
    return states, rewards
