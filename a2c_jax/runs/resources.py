"""Up-front memory estimates, so that sizes that cannot fit are refused before anything is written
or compiled (instead of ending in RESOURCE_EXHAUSTED, or a hang under a memory limit, after it).

The estimates are deliberately generous upper bounds from shapes alone (`jax.eval_shape`, nothing is
allocated): they only have to tell "fits easily" from "cannot possibly fit".
"""

from __future__ import annotations

import math
import os

import jax

from a2c_jax.config import ConfigError
from a2c_jax.core.train import Agent

# Copies of the per-env loop state XLA may hold at once inside a compiled update (loop carries,
# double buffers, the rollout's stacked outputs and their gradients).
_LIVE_COPIES = 8
_METRIC_FIELDS = 10


def _tree_bytes(tree: object) -> int:
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def _env_and_carry_bytes(agent: Agent) -> int:
    """Bytes of one environment's state (wrapper statistics included) and one policy carry."""
    env_state = jax.eval_shape(agent.vec_env.reset, jax.random.PRNGKey(0))[1]
    carry = jax.eval_shape(agent.policy.initial_carry, 1)
    return _tree_bytes(env_state) // agent.config.num_envs + _tree_bytes(carry)


def per_env_bytes(agent: Agent) -> int:
    """Bytes one environment costs: its state, and T steps of observations, actions and rewards."""
    spec = agent.spec
    per_step = 2 * 4 * math.prod(spec.obs_shape) + 4 * spec.action_dim + 4 * 12
    return _env_and_carry_bytes(agent) + agent.config.num_steps * per_step


def params_bytes(agent: Agent) -> int:
    """Bytes of the policy's parameters."""
    return _tree_bytes(jax.eval_shape(agent.policy.init, jax.random.PRNGKey(0)))


def train_bytes(agent: Agent, updates_per_program: int) -> int:
    """Upper estimate of the device memory one agent needs while training.

    `updates_per_program` is how many updates' metrics one compiled program keeps (a chunk of the
    host loop, or the whole run in a fused sweep).
    """
    envs = _LIVE_COPIES * agent.config.num_envs * per_env_bytes(agent)
    return envs + 8 * params_bytes(agent) + 4 * _METRIC_FIELDS * updates_per_program + 2**16


def eval_bytes(agent: Agent, episodes: int) -> int:
    """Upper estimate of the device memory of `episodes` parallel evaluation episodes."""
    per_episode = _env_and_carry_bytes(agent) + 4 * math.prod(agent.spec.obs_shape) + 64
    return _LIVE_COPIES * episodes * per_episode + 2 * params_bytes(agent)


def available_bytes() -> int:
    """Memory a program may use: 80% of the accelerator's limit, or half of the host's RAM."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] * 0.8)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError):
        return 8 * 2**30


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_fits(agent: Agent, updates_per_program: int, eval_episodes: int, members: int = 1) -> None:
    """Raise ConfigError naming the field and the largest value that fits when the run cannot fit."""
    config = agent.config
    limit = available_bytes()
    need = members * train_bytes(agent, updates_per_program)
    params = members * 8 * params_bytes(agent)
    if params > limit:
        raise ConfigError(
            f"hidden_sizes={tuple(config.hidden_sizes)} needs about {_gib(params)} of memory for the parameters and "
            f"their optimizer state alone"
            + (f" ({members} members)" if members > 1 else "")
            + f", more than the {_gib(limit)} available: choose smaller layers"
        )
    if need > limit:
        per_env = _LIVE_COPIES * per_env_bytes(agent) * members
        fit = max(0, (limit - need + config.num_envs * per_env) // max(per_env, 1))
        raise ConfigError(
            f"num_envs={config.num_envs} needs about {_gib(need)} of memory to train"
            + (f" ({members} members)" if members > 1 else "")
            + f", more than the {_gib(limit)} available: at most about {fit} envs fit with num_steps={config.num_steps}"
        )
    need = members * eval_bytes(agent, eval_episodes)
    if need > limit:
        fit = eval_episodes * limit // need
        raise ConfigError(
            f"eval_episodes={eval_episodes} needs about {_gib(need)} of memory, more than the {_gib(limit)} "
            f"available: at most about {fit} fit"
        )
