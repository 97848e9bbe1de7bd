"""a2c_jax: pure-functional Advantage Actor-Critic in JAX on gymnax environments.

The public names below are imported on first use (PEP 562), so `import a2c_jax.cli` (and
`a2c-jax --help`) does not pay for importing gymnax, flax and optax, and so nothing touches a JAX
backend before `jax.distributed.initialize` may run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from a2c_jax.advantages import gae
    from a2c_jax.config import A2CConfig, ConfigError, HParams, preset
    from a2c_jax.distributions import CATEGORICAL, DIAG_GAUSSIAN, DistributionFns
    from a2c_jax.envs import EnvSpec, VecEnv, make_env
    from a2c_jax.evaluate import EvalResult, evaluate
    from a2c_jax.losses import Batch, LossMetrics, a2c_loss, a2c_objective
    from a2c_jax.networks import ActorCritic, Policy, feedforward_policy, make_policy, recurrent_policy, reset_carry
    from a2c_jax.pbt import PBTResult, make_pbt
    from a2c_jax.rollout import Transition, rollout
    from a2c_jax.space import expand_settings
    from a2c_jax.sweep import Member, SweepResult, make_members, rank_settings, run_sweep
    from a2c_jax.train import (
        Agent,
        TrainState,
        UpdateMetrics,
        build_agent,
        init_state,
        make_agent,
        make_batch,
        make_optimizer,
        make_run_chunk,
        make_train,
        update,
    )

_LAZY: dict[str, str] = {
    "A2CConfig": "a2c_jax.config",
    "Agent": "a2c_jax.train",
    "ActorCritic": "a2c_jax.networks",
    "Batch": "a2c_jax.losses",
    "CATEGORICAL": "a2c_jax.distributions",
    "ConfigError": "a2c_jax.config",
    "DIAG_GAUSSIAN": "a2c_jax.distributions",
    "DistributionFns": "a2c_jax.distributions",
    "EnvSpec": "a2c_jax.envs",
    "EvalResult": "a2c_jax.evaluate",
    "HParams": "a2c_jax.config",
    "LossMetrics": "a2c_jax.losses",
    "Member": "a2c_jax.sweep",
    "PBTResult": "a2c_jax.pbt",
    "Policy": "a2c_jax.networks",
    "SweepResult": "a2c_jax.sweep",
    "TrainState": "a2c_jax.train",
    "Transition": "a2c_jax.rollout",
    "UpdateMetrics": "a2c_jax.train",
    "VecEnv": "a2c_jax.envs",
    "a2c_loss": "a2c_jax.losses",
    "a2c_objective": "a2c_jax.losses",
    "build_agent": "a2c_jax.train",
    "evaluate": "a2c_jax.evaluate",
    "expand_settings": "a2c_jax.space",
    "feedforward_policy": "a2c_jax.networks",
    "gae": "a2c_jax.advantages",
    "init_state": "a2c_jax.train",
    "make_agent": "a2c_jax.train",
    "make_batch": "a2c_jax.train",
    "make_env": "a2c_jax.envs",
    "make_members": "a2c_jax.sweep",
    "make_optimizer": "a2c_jax.optim",
    "make_pbt": "a2c_jax.pbt",
    "make_policy": "a2c_jax.networks",
    "make_run_chunk": "a2c_jax.train",
    "make_train": "a2c_jax.train",
    "preset": "a2c_jax.config",
    "rank_settings": "a2c_jax.sweep",
    "recurrent_policy": "a2c_jax.networks",
    "reset_carry": "a2c_jax.networks",
    "rollout": "a2c_jax.rollout",
    "run_sweep": "a2c_jax.sweep",
    "update": "a2c_jax.train",
}

__version__ = "0.1.0"

__all__ = [
    "CATEGORICAL",
    "DIAG_GAUSSIAN",
    "A2CConfig",
    "ActorCritic",
    "Agent",
    "Batch",
    "ConfigError",
    "DistributionFns",
    "EnvSpec",
    "EvalResult",
    "HParams",
    "LossMetrics",
    "Member",
    "PBTResult",
    "Policy",
    "SweepResult",
    "TrainState",
    "Transition",
    "UpdateMetrics",
    "VecEnv",
    "a2c_loss",
    "a2c_objective",
    "build_agent",
    "evaluate",
    "expand_settings",
    "feedforward_policy",
    "gae",
    "init_state",
    "make_agent",
    "make_batch",
    "make_env",
    "make_members",
    "make_optimizer",
    "make_pbt",
    "make_policy",
    "make_run_chunk",
    "make_train",
    "preset",
    "rank_settings",
    "recurrent_policy",
    "reset_carry",
    "rollout",
    "run_sweep",
    "update",
]


def lazy_exports(
    module: str, names: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's PEP 562 `__getattr__` and `__dir__`: `names` maps each public name to the module
    that defines it, imported on first access and then kept in `namespace` (the package's globals)."""

    def getattr_(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return getattr_, lambda: sorted(names)


__getattr__, __dir__ = lazy_exports("a2c_jax", _LAZY, globals())
