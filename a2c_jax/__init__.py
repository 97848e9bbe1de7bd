"""a2c_jax: pure-functional Advantage Actor-Critic in JAX on gymnax environments."""

from a2c_jax.advantages import gae
from a2c_jax.config import A2CConfig, ConfigError, HParams, preset
from a2c_jax.distributions import CATEGORICAL, DIAG_GAUSSIAN, DistributionFns
from a2c_jax.envs import EnvSpec, VecEnv, make_env
from a2c_jax.evaluate import EvalResult, evaluate
from a2c_jax.losses import Batch, LossMetrics, a2c_loss
from a2c_jax.networks import ActorCritic, Policy, feedforward_policy, make_policy, recurrent_policy, reset_carry
from a2c_jax.pbt import PBTResult, make_pbt
from a2c_jax.rollout import Transition, rollout
from a2c_jax.sweep import Member, SweepResult, expand_settings, make_members, rank_settings, run_sweep
from a2c_jax.train import (
    TrainState,
    UpdateMetrics,
    init_state,
    make_agent,
    make_batch,
    make_optimizer,
    make_run_chunk,
    make_train,
    update,
)

__version__ = "0.1.0"

__all__ = [
    "CATEGORICAL",
    "DIAG_GAUSSIAN",
    "A2CConfig",
    "ActorCritic",
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
