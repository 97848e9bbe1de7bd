"""The default family: gymnax environments (`CartPole-v1`, `gymnax:CartPole-v1`)."""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

import jax.numpy as jnp

from a2c_jax.config import ConfigError
from a2c_jax.envs.spaces import EnvSpec


def _unsupported(env_id: str, what: str, space: Any) -> ConfigError:
    return ConfigError(
        f"env_id={env_id!r} is unsupported: its {what} space {space!r} is not handled "
        "(allowed: observation Box or Discrete; action Discrete or a bounded Box)"
    )


def spec_from_spaces(env_id: str, obs_space: Any, action_space: Any, max_steps: int) -> EnvSpec:
    """Build an EnvSpec, or raise ConfigError naming the space the policy cannot handle."""
    spaces = import_gymnax_module("spaces")
    onehot = 0
    if isinstance(obs_space, spaces.Discrete):
        obs_shape: tuple[int, ...] = (int(obs_space.n),)
        onehot = int(obs_space.n)
    elif isinstance(obs_space, spaces.Box):
        obs_shape = tuple(int(d) for d in obs_space.shape)
    else:
        raise _unsupported(env_id, "observation", obs_space)
    if isinstance(action_space, spaces.Discrete):
        return EnvSpec(env_id, obs_shape, "discrete", int(action_space.n), (), (), onehot, max_steps)
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        dim = int(action_space.shape[0])
        low = tuple(float(v) for v in jnp.broadcast_to(action_space.low, (dim,)))
        high = tuple(float(v) for v in jnp.broadcast_to(action_space.high, (dim,)))
        if all(abs(v) < float("inf") for v in low + high):
            return EnvSpec(env_id, obs_shape, "continuous", dim, low, high, onehot, max_steps)
    raise _unsupported(env_id, "action", action_space)


# --- importing gymnax environments ---------------------------------------------------------------
#
# `import gymnax` runs its package __init__, which imports every environment family; the bsuite and
# misc families pull in matplotlib, scipy and seaborn (about 2 s on a 2-core CPU, most of the start-up
# of a CartPole run). The classic-control and MinAtar families import only JAX. Their modules are
# imported here with gymnax's two package __init__s skipped: empty stand-ins for `gymnax` and
# `gymnax.environments` sit in sys.modules only while the family is imported, then are removed, so a
# later `import gymnax` runs normally and reuses the very same modules (the same classes). Every
# other id goes through `gymnax.make`.

_LIGHT_ENVS: dict[str, tuple[str, str]] = {
    "CartPole-v1": ("classic_control.cartpole", "CartPole"),
    "Pendulum-v1": ("classic_control.pendulum", "Pendulum"),
    "Acrobot-v1": ("classic_control.acrobot", "Acrobot"),
    "MountainCar-v0": ("classic_control.mountain_car", "MountainCar"),
    "MountainCarContinuous-v0": ("classic_control.continuous_mountain_car", "ContinuousMountainCar"),
    "Asterix-MinAtar": ("minatar.asterix", "MinAsterix"),
    "Breakout-MinAtar": ("minatar.breakout", "MinBreakout"),
    "Freeway-MinAtar": ("minatar.freeway", "MinFreeway"),
    "Seaquest-MinAtar": ("minatar.seaquest", "MinSeaquest"),
    "SpaceInvaders-MinAtar": ("minatar.space_invaders", "MinSpaceInvaders"),
}
"""gymnax ids -> (module under gymnax.environments, class) importable without gymnax's package init."""


def import_gymnax_module(name: str) -> types.ModuleType:
    """`gymnax.environments.<name>` without running the `gymnax` and `gymnax.environments` package
    __init__s when they have not run yet (see above); an ordinary import when they have."""
    full = f"gymnax.environments.{name}"
    if full in sys.modules or "gymnax.environments" in sys.modules:
        return importlib.import_module(full)
    root = importlib.util.find_spec("gymnax")
    if root is None or not root.submodule_search_locations:
        raise ConfigError("gymnax is not installed: pip install gymnax")
    added = []
    for package in ("gymnax", "gymnax.environments"):
        if package not in sys.modules:
            path = [str(p) + package[len("gymnax") :].replace(".", "/") for p in root.submodule_search_locations]
            stand_in = types.ModuleType(package)
            stand_in.__path__ = path
            stand_in.__spec__ = importlib.machinery.ModuleSpec(package, None, is_package=True)
            stand_in.__spec__.submodule_search_locations = path
            sys.modules[package] = stand_in
            added.append(package)
    try:
        return importlib.import_module(full)
    finally:
        for package in added:
            del sys.modules[package]


def registered_env_ids() -> list[str]:
    """Every id gymnax can build (imports all of gymnax)."""
    import gymnax

    return list(gymnax.registered_envs)


def _build_gymnax(env_id: str) -> tuple[Any, Any]:
    """(env, default params) for a gymnax id: the light import for the families in `_LIGHT_ENVS`."""
    if env_id in _LIGHT_ENVS:
        module, cls = _LIGHT_ENVS[env_id]
        try:
            env = getattr(import_gymnax_module(module), cls)()
            return env, env.default_params
        except (ImportError, AttributeError):  # a gymnax whose layout differs: its own make below
            pass
    import gymnax

    return gymnax.make(env_id)


def make_gymnax(env_id: str) -> tuple[Any, Any, EnvSpec]:
    """(gymnax env, default env params, EnvSpec) for a gymnax id."""
    known = list(_LIGHT_ENVS) if env_id in _LIGHT_ENVS else registered_env_ids()
    if env_id not in known:
        close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else f"known ids: {', '.join(known)}"
        raise ConfigError(f"env_id={env_id!r} is unknown to gymnax; {hint}")
    try:
        env, params = _build_gymnax(env_id)
    except Exception as err:  # e.g. MNISTBandit downloads its data set at construction
        raise ConfigError(
            f"env_id={env_id!r} could not be built ({type(err).__name__}: {err}); "
            "environments that download data at construction are unsupported offline"
        ) from None
    max_steps = int(getattr(params, "max_steps_in_episode", 1000))
    spec = spec_from_spaces(env_id, env.observation_space(params), env.action_space(params), max_steps)
    return env, params, spec
