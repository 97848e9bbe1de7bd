"""One A2C update as a pure function, and the fused / chunked training programs built from it.

update = rollout -> values of obs and final obs (one batched critic pass) -> GAE -> loss gradient ->
clip_by_global_norm -> RMSprop/Adam. The optimizer is rebuilt inside the traced function from the
`HParams` leaves, so learning rate, decay and epsilon can all carry a population axis.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from a2c_jax.config import A2CConfig, HParams
from a2c_jax.core.advantages import gae
from a2c_jax.core.losses import Batch, LossMetrics, a2c_loss
from a2c_jax.core.networks import Carry, Params, Policy, make_policy
from a2c_jax.core.optim import make_optimizer
from a2c_jax.core.rollout import Transition, rollout
from a2c_jax.core.stats import weighted_mean
from a2c_jax.envs import EnvSpec, VecEnv, VecEnvState, make_env


@dataclasses.dataclass(frozen=True, eq=False)
class Agent:
    """The static pieces of a training program for one config: the config, its env's spec, the
    policy's pure functions and the batched env (which holds the env and its params).

    Built once on the host by `build_agent` and passed to every compiled function (`init_state`,
    `update`, `make_run_chunk`, `evaluate`, ...), which close over it. Compared and hashed by
    identity, so it can be a static argument of `jax.jit`: the same Agent object, the same program.
    """

    config: A2CConfig
    spec: EnvSpec
    policy: Policy
    vec_env: VecEnv


def build_agent(config: A2CConfig) -> Agent:
    """Validate `config` and build its environment, policy and batched env (ConfigError naming the
    field or env id when it cannot be built). Not cached: call it once, at the edge, and pass the Agent."""
    config.validate()
    env, env_params, spec = make_env(config.env_id)
    vec_env = VecEnv(
        env, env_params, spec, config.num_envs, config.normalize_observation, config.normalize_reward,
        config.squash_output,
    )  # fmt: skip
    return Agent(config, spec, make_policy(config, spec), vec_env)


def make_agent(config: A2CConfig) -> Agent:
    """Deprecated name of `build_agent` (kept for one release; no longer cached)."""
    return build_agent(config)


def as_agent(config_or_agent: A2CConfig | Agent) -> Agent:
    """The Agent itself, or one built from a config (for the program builders that accept either;
    call it on the host, never inside a trace)."""
    return config_or_agent if isinstance(config_or_agent, Agent) else build_agent(config_or_agent)


@struct.dataclass
class TrainState:
    """Everything one agent carries between updates (a pytree; checkpointable; vmappable).

    obs is [N, *obs_shape]; carry is the policy's hidden state before obs (leaves [N, ...]; () for
    feed-forward policies); key is a uint32[2] PRNG key; update_step counts finished updates.
    """

    params: Params
    opt_state: optax.OptState
    env_state: VecEnvState
    obs: jax.Array
    key: jax.Array
    update_step: jax.Array
    carry: Carry = ()


class UpdateMetrics(NamedTuple):
    """Fixed-shape scalars of one update. Episode fields average the episodes that ended during the
    rollout (0 when none did; `episodes` counts them so the host can weight)."""

    loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    explained_variance: jax.Array
    grad_norm: jax.Array
    learning_rate: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    episodes: jax.Array


def init_state(agent: Agent, hparams: HParams, key: jax.Array) -> TrainState:
    """Fresh parameters, optimizer state and reset environments for one agent."""
    config = agent.config
    hparams = hparams.as_arrays()
    key, params_key, env_key = jax.random.split(key, 3)
    params = agent.policy.init(params_key)
    opt_state = make_optimizer(config.optimizer, hparams, hparams.lr).init(params)
    obs, env_state = agent.vec_env.reset(env_key)
    carry = agent.policy.initial_carry(config.num_envs)
    return TrainState(params, opt_state, env_state, obs, key, jnp.zeros((), jnp.int32), carry)


def run_once_options() -> dict[str, Any]:
    """XLA compiler options for the programs a process runs once (initialisation, final evaluation).

    On a CPU: LLVM's optimisation level 0, which about halves their compile while they still run in
    milliseconds (start-up figures: benchmarks/results/cpu-startup.json). Their results agree with the
    optimised build to float32 rounding, not bit for bit. The training chunk keeps full optimisation
    (level 0 runs it several times slower). No options elsewhere.
    """
    return {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}


def jit_once(fun: Callable[..., Any], **jit_kwargs: Any) -> Callable[..., Any]:
    """`jax.jit(fun, compiler_options=run_once_options(), **jit_kwargs)`, built at the first call
    (only then is the backend known), for programs that run once per process."""

    @functools.cache
    def build() -> Any:
        return jax.jit(fun, compiler_options=run_once_options(), **jit_kwargs)

    @functools.wraps(fun)
    def call(*args: Any, **kwargs: Any) -> Any:
        return build()(*args, **kwargs)

    return call


def learning_rate(config: A2CConfig, hparams: HParams, update_step: jax.Array) -> jax.Array:
    """The learning rate for update `update_step` (0-based).

    "linear" follows SB3: lr * progress_remaining, where progress is measured after the rollout,
    i.e. lr * (1 - (update_step + 1) / num_updates).
    """
    if config.lr_schedule == "constant":
        return jnp.asarray(hparams.lr, jnp.float32)
    remaining = 1.0 - (update_step + 1).astype(jnp.float32) / config.num_updates
    return hparams.lr * jnp.maximum(remaining, 0.0)


def make_batch(
    policy: Policy, params: Params, traj: Transition, hparams: HParams, carry: Carry = ()
) -> tuple[Batch, jax.Array]:
    """Values of obs and final obs (one critic pass), then GAE.

    `carry` is the policy's hidden state at the start of the rollout. Returns (Batch [T, N], values [T, N]).
    """
    done = traj.done
    values, next_values = jax.lax.stop_gradient(policy.values(params, carry, traj.obs, done, traj.final_obs))
    advantages, returns = gae(
        traj.reward, values, next_values, traj.terminated, traj.truncated, hparams.gamma, hparams.gae_lambda
    )
    return Batch(traj.obs, traj.action, advantages, returns, done, carry), values


def _episode_stats(traj: Transition) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Masked means of finished episodes' raw return and length, and their count."""
    ended = (traj.episode_length > 0).astype(jnp.float32)
    return weighted_mean(traj.episode_return, ended), weighted_mean(traj.episode_length, ended), ended.sum()


def learn(
    config: A2CConfig,
    policy: Policy,
    params: Params,
    opt_state: optax.OptState,
    traj: Transition,
    hparams: HParams,
    update_step: jax.Array | int,
    carry: Carry = (),
) -> tuple[Params, optax.OptState, LossMetrics, Params, jax.Array]:
    """Everything of an update after the rollout: values and GAE (`make_batch`), the loss gradient,
    then one optimizer step at update `update_step`'s learning rate.

    Returns (params, opt_state, loss metrics, gradients, learning rate)."""
    batch, _ = make_batch(policy, params, traj, hparams, carry)
    grads, loss_metrics = jax.grad(a2c_loss, has_aux=True)(params, policy, batch, hparams, config.normalize_advantage)
    lr = learning_rate(config, hparams, jnp.asarray(update_step))
    tx = make_optimizer(config.optimizer, hparams, lr)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss_metrics, grads, lr


def update(agent: Agent, state: TrainState, hparams: HParams) -> tuple[TrainState, UpdateMetrics]:
    """One A2C update: T env steps in each of N envs, then one full-batch gradient step."""
    config = agent.config
    hparams = hparams.as_arrays()
    key, rollout_key = jax.random.split(state.key)
    env_state, obs, carry, traj = rollout(
        agent.policy,
        state.params,
        agent.vec_env,
        state.env_state,
        state.obs,
        state.carry,
        rollout_key,
        config.num_steps,
        hparams.gamma,
    )
    params, opt_state, loss_metrics, grads, lr = learn(
        config, agent.policy, state.params, state.opt_state, traj, hparams, state.update_step, state.carry
    )
    ep_return, ep_length, episodes = _episode_stats(traj)
    metrics = UpdateMetrics(
        **loss_metrics._asdict(),
        grad_norm=optax.tree.norm(grads),
        learning_rate=lr,
        episode_return=ep_return,
        episode_length=ep_length,
        episodes=episodes,
    )
    new_state = TrainState(params, opt_state, env_state, obs, key, state.update_step + 1, carry)
    return new_state, metrics


def make_run_chunk(agent: Agent | A2CConfig, max_updates: int) -> Callable[..., tuple[TrainState, UpdateMetrics]]:
    """run_chunk(state, hparams, n_updates=max_updates) -> (state, UpdateMetrics[max_updates]).

    Runs `n_updates` <= `max_updates` updates in one compiled loop, for host loops that log and
    checkpoint between chunks. `n_updates` may be traced, so one compiled program serves every
    chunk, a shorter last one included; metric rows from `n_updates` on are zero. Pure; jit it
    from outside. Given a config, builds its Agent first (here, on the host).
    """
    agent = as_agent(agent)

    def run_chunk(
        state: TrainState, hparams: HParams, n_updates: jax.Array | int = max_updates
    ) -> tuple[TrainState, UpdateMetrics]:
        # every metric is a float32 scalar (checked below while tracing): no extra trace of `update`
        buffer = UpdateMetrics(*(jnp.zeros((max_updates,), jnp.float32) for _ in UpdateMetrics._fields))

        def body(i: jax.Array, carry: tuple[TrainState, UpdateMetrics]) -> tuple[TrainState, UpdateMetrics]:
            s, buf = carry
            s, m = update(agent, s, hparams)
            chex.assert_rank(list(m), 0)
            chex.assert_type(list(m), jnp.float32)
            return s, jax.tree.map(lambda b, x: b.at[i].set(x), buf, m)

        return jax.lax.fori_loop(0, n_updates, body, (state, buffer))

    return run_chunk


def make_train(agent: Agent | A2CConfig) -> Callable[[jax.Array, HParams], tuple[TrainState, UpdateMetrics]]:
    """train(key, hparams) -> (final TrainState, UpdateMetrics[num_updates]), the whole run fused.

    Takes an Agent or a config (whose Agent is built here, once). Pure: `jax.jit(jax.vmap(train))(keys,
    hparams_batch)` trains a population in one program.
    """
    agent = as_agent(agent)
    run = make_run_chunk(agent, agent.config.num_updates)

    def train(key: jax.Array, hparams: HParams) -> tuple[TrainState, UpdateMetrics]:
        chex.assert_shape(key, (2,))
        return run(init_state(agent, hparams, key), hparams)

    return train
