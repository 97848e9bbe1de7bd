"""a2c_jax: pure-functional Advantage Actor-Critic in JAX on gymnax environments.

The public names below are imported on first use (PEP 562), so `import a2c_jax.cli` (and
`a2c-jax --help`) does not pay for importing gymnax, flax and optax, and so nothing touches a JAX
backend before `jax.distributed.initialize` may run.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import TYPE_CHECKING, Any

from a2c_jax._lazy import lazy_exports

if TYPE_CHECKING:
    from a2c_jax.config import A2CConfig, ConfigError, HParams, preset
    from a2c_jax.core.advantages import gae
    from a2c_jax.core.distributions import CATEGORICAL, DIAG_GAUSSIAN, DistributionFns
    from a2c_jax.core.evaluate import EvalResult, evaluate
    from a2c_jax.core.losses import Batch, LossMetrics, a2c_loss, a2c_objective
    from a2c_jax.core.networks import (
        ActorCritic,
        Policy,
        feedforward_policy,
        make_policy,
        recurrent_policy,
        reset_carry,
    )
    from a2c_jax.core.rollout import Transition, rollout
    from a2c_jax.core.train import (
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
    from a2c_jax.envs import EnvSpec, VecEnv, make_env
    from a2c_jax.population.pbt import PBTResult, make_pbt
    from a2c_jax.population.space import expand_settings
    from a2c_jax.population.sweep import Member, SweepResult, make_members, rank_settings, run_sweep

_LAZY: dict[str, str] = {
    "A2CConfig": "a2c_jax.config",
    "Agent": "a2c_jax.core.train",
    "ActorCritic": "a2c_jax.core.networks",
    "Batch": "a2c_jax.core.losses",
    "CATEGORICAL": "a2c_jax.core.distributions",
    "ConfigError": "a2c_jax.config",
    "DIAG_GAUSSIAN": "a2c_jax.core.distributions",
    "DistributionFns": "a2c_jax.core.distributions",
    "EnvSpec": "a2c_jax.envs",
    "EvalResult": "a2c_jax.core.evaluate",
    "HParams": "a2c_jax.config",
    "LossMetrics": "a2c_jax.core.losses",
    "Member": "a2c_jax.population.sweep",
    "PBTResult": "a2c_jax.population.pbt",
    "Policy": "a2c_jax.core.networks",
    "SweepResult": "a2c_jax.population.sweep",
    "TrainState": "a2c_jax.core.train",
    "Transition": "a2c_jax.core.rollout",
    "UpdateMetrics": "a2c_jax.core.train",
    "VecEnv": "a2c_jax.envs",
    "a2c_loss": "a2c_jax.core.losses",
    "a2c_objective": "a2c_jax.core.losses",
    "build_agent": "a2c_jax.core.train",
    "evaluate": "a2c_jax.core.evaluate",
    "expand_settings": "a2c_jax.population.space",
    "feedforward_policy": "a2c_jax.core.networks",
    "gae": "a2c_jax.core.advantages",
    "init_state": "a2c_jax.core.train",
    "make_agent": "a2c_jax.core.train",
    "make_batch": "a2c_jax.core.train",
    "make_env": "a2c_jax.envs",
    "make_members": "a2c_jax.population.sweep",
    "make_optimizer": "a2c_jax.core.optim",
    "make_pbt": "a2c_jax.population.pbt",
    "make_policy": "a2c_jax.core.networks",
    "make_run_chunk": "a2c_jax.core.train",
    "make_train": "a2c_jax.core.train",
    "preset": "a2c_jax.config",
    "rank_settings": "a2c_jax.population.sweep",
    "recurrent_policy": "a2c_jax.core.networks",
    "reset_carry": "a2c_jax.core.networks",
    "rollout": "a2c_jax.core.rollout",
    "run_sweep": "a2c_jax.population.sweep",
    "update": "a2c_jax.core.train",
}


def _version() -> str:
    """The installed distribution's version (pyproject.toml is its one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("a2c-jax")
    except PackageNotFoundError:  # a source tree on sys.path that was never installed
        return "0+unknown"


__version__ = _version()

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


__getattr__, __dir__ = lazy_exports("a2c_jax", _LAZY, globals())


# --- module paths of release 0.1 (one flat folder), kept for one release ---------------------------

_MOVED: dict[str, str] = {
    "a2c_jax.advantages": "a2c_jax.core.advantages",
    "a2c_jax.distributions": "a2c_jax.core.distributions",
    "a2c_jax.networks": "a2c_jax.core.networks",
    "a2c_jax.rollout": "a2c_jax.core.rollout",
    "a2c_jax.losses": "a2c_jax.core.losses",
    "a2c_jax.optim": "a2c_jax.core.optim",
    "a2c_jax.train": "a2c_jax.core.train",
    "a2c_jax.evaluate": "a2c_jax.core.evaluate",
    "a2c_jax.prng": "a2c_jax.core.prng",
    "a2c_jax.stats": "a2c_jax.core.stats",
    "a2c_jax.runner": "a2c_jax.runs.runner",
    "a2c_jax.checkpoint": "a2c_jax.runs.checkpoint",
    "a2c_jax.logging": "a2c_jax.runs.records",
    "a2c_jax.plotting": "a2c_jax.runs.plots",
    "a2c_jax.trackers": "a2c_jax.runs.trackers",
    "a2c_jax.resources": "a2c_jax.runs.resources",
    "a2c_jax.distributed": "a2c_jax.runs.distributed",
    "a2c_jax.space": "a2c_jax.population.space",
    "a2c_jax.sweep": "a2c_jax.population.sweep",
    "a2c_jax.pbt": "a2c_jax.population.pbt",
    "a2c_jax.tuning": "a2c_jax.population.study",
    "a2c_jax.families.brax": "a2c_jax.envs.brax",
    "a2c_jax.families.craftax": "a2c_jax.envs.craftax",
}
"""Old module path -> where it lives now (the layout of DESIGN.md: a package per layer)."""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import a2c_jax.train` (a path of release 0.1) gives the module `a2c_jax.core.train` itself, with
    a DeprecationWarning naming the new path. Only the names in `_MOVED` are answered."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _MOVED and fullname != "a2c_jax.families":
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=fullname == "a2c_jax.families")

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if spec.name == "a2c_jax.families":
            return types.ModuleType(spec.name)
        warnings.warn(
            f"{spec.name} moved to {_MOVED[spec.name]}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(_MOVED[spec.name])
        self._spec = module.__spec__  # the import system overwrites __spec__; exec_module puts it back
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__ != "a2c_jax.families":
            module.__spec__ = self._spec


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
