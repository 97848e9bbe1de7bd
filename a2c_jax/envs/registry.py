"""Families of environments behind namespaces (`namespace:name`), and `make_env`."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from a2c_jax.config import ConfigError
from a2c_jax.envs.gymnax import make_gymnax
from a2c_jax.envs.spaces import EnvSpec

EnvBuilder = Callable[[str], tuple[Any, Any, EnvSpec]]
"""A family's constructor: name within the namespace -> (env, env params, EnvSpec)."""

_FAMILIES: dict[str, EnvBuilder] = {}
BUILTIN_FAMILIES = {"brax": ("a2c_jax.envs.brax", "brax"), "craftax": ("a2c_jax.envs.craftax", "craftax")}
"""namespace -> (adapter module with a `build(name)`, the extra that installs its package)."""
DEFAULT_NAMESPACE = "gymnax"
ENTRY_POINT_GROUP = "a2c_jax.env_families"


def register_env_family(namespace: str, build: EnvBuilder) -> None:
    """Make `namespace:name` ids build through `build(name)`; re-registering a namespace replaces it
    (agents built before keep the environments they were built with; nothing is cached)."""
    if not namespace.isidentifier() or namespace == DEFAULT_NAMESPACE:
        raise ConfigError(f"namespace={namespace!r} is invalid: must be an identifier other than 'gymnax'")
    _FAMILIES[namespace] = build


def unregister_env_family(namespace: str) -> None:
    """Forget a registered namespace (a no-op when it is not registered); agents built through it keep
    their environments."""
    _FAMILIES.pop(namespace, None)


def split_env_id(env_id: str) -> tuple[str, str]:
    """'brax:ant' -> ('brax', 'ant'); an id without a namespace is gymnax's."""
    namespace, sep, name = env_id.partition(":")
    return (namespace, name) if sep else (DEFAULT_NAMESPACE, env_id)


def _family(namespace: str) -> EnvBuilder:
    """The registered builder of `namespace`, loading an installed entry point when needed."""
    if namespace not in _FAMILIES and namespace in BUILTIN_FAMILIES:
        module, extra = BUILTIN_FAMILIES[namespace]
        if importlib.util.find_spec(namespace) is None:
            raise ConfigError(f"env_id namespace {namespace!r} needs its package: pip install 'a2c-jax[{extra}]'")
        _FAMILIES[namespace] = importlib.import_module(module).build
    if namespace not in _FAMILIES:
        from importlib.metadata import entry_points

        for point in entry_points(group=ENTRY_POINT_GROUP, name=namespace):
            _FAMILIES[namespace] = point.load()
    if namespace not in _FAMILIES:
        known = ", ".join([DEFAULT_NAMESPACE, *sorted(set(_FAMILIES) | set(BUILTIN_FAMILIES))])
        raise ConfigError(
            f"env_id namespace {namespace!r} is unknown: known are {known} (register one with "
            "a2c_jax.envs.register_env_family, or install a package that provides it)"
        )
    return _FAMILIES[namespace]


def make_env(env_id: str) -> tuple[Any, Any, EnvSpec]:
    """(env, env params, EnvSpec) for `env_id` (see the module docstring for the protocol), or a
    ConfigError that says why not. Builds afresh on every call (nothing is cached): call it on the
    host, once, and pass what it returns (`build_agent` does)."""
    namespace, name = split_env_id(env_id)
    if namespace != DEFAULT_NAMESPACE:
        build = _family(namespace)
        try:
            env, params, spec = build(name)
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(f"env_id={env_id!r} could not be built ({type(err).__name__}: {err})") from None
        if not isinstance(spec, EnvSpec):
            raise ConfigError(f"env_id={env_id!r}: its family returned {type(spec).__name__}, not an EnvSpec")
        return env, params, dataclasses.replace(spec, env_id=env_id)
    return make_gymnax(name)
