"""Programs a warm start loads instead of tracing: `jax.export` serialisations of a run's one-device
programs (initialisation, the training chunk, the final evaluation), kept in a store directory.

JAX's persistent compilation cache skips XLA's compile, but every process still traces the Python
functions and lowers them to StableHLO before it can look the executable up (about 1.5 s of a warm
`a2c-jax train` on a 2-core CPU). A stored program skips both: it is read back, wrapped by
`Exported.call` and compiled, which the compilation cache then answers.

A program's file name holds a hash of everything that decides it: the caller's key (the config and
the program's own sizes), the argument shapes and dtypes, the compiler options, the backend and
device kind, XLA_FLAGS, the versions of JAX and the libraries traced into it, and a hash of this
package's Python sources. Anything else changes the name, so a stale program is never loaded. A
program `jax.export` cannot serialise, or a stored one this process cannot compile, is traced as
usual (a marker file says why, so the next run does not try again); a file that cannot be read or
written is left alone and the run compiles as usual. A store has no size limit: deleting it, or any
file in it, is always safe.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.metadata
import io
import json
import os
import pickle
import struct
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax

from a2c_jax.runs.records import write_bytes_atomic

MAGIC = b"A2CJAXP1"
"""The first bytes of a stored program (then the treedefs' length, the pickled treedefs, the export)."""

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "chex", "numpy", "gymnax", "brax", "craftax", "mujoco", "flatbuffers")
"""Distributions whose code a program may contain (and flatbuffers, which serialises it): their
versions are part of every key."""


@functools.cache
def source_hash() -> str:
    """sha256 of this package's Python sources (paths and bytes), computed once per process."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def library_versions() -> tuple[tuple[str, str], ...]:
    """(name, version) of each of `LIBRARIES` that is installed."""
    found = []
    for name in LIBRARIES:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(found)


def program_key(name: str, key: Mapping[str, Any], args: Any, compiler_options: Mapping[str, Any]) -> str:
    """The hex sha256 that names a stored program: `key` (JSON-able), the abstract `args` (shapes,
    dtypes, tree structure), the compiler options, the device, XLA_FLAGS, versions and sources."""
    device = jax.devices()[0]
    parts = {
        "name": name,
        "key": key,
        "args": [
            str(jax.tree.structure(args)),
            [f"{x.dtype}{list(x.shape)}{getattr(x, 'weak_type', False)}" for x in jax.tree.leaves(args)],
        ],
        "compiler_options": dict(compiler_options),
        "device": [jax.default_backend(), device.device_kind, jax.device_count()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": library_versions(),
        "sources": source_hash(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _pack(out_tree: Any, exported: jax.export.Exported) -> bytes:
    buffer = io.BytesIO()
    _TreePickler(buffer).dump(out_tree)
    trees = buffer.getvalue()
    return MAGIC + struct.pack("<Q", len(trees)) + trees + bytes(exported.serialize())


def _resolve(module: str, qualname: str) -> Any:
    """The class `module.qualname`, from sys.modules when its module is imported."""
    found = sys.modules.get(module) or importlib.import_module(module)
    return functools.reduce(getattr, qualname.split("."), found)


class _TreePickler(pickle.Pickler):
    """Pickles a treedef with its node classes as `_resolve(module, qualname)` calls. Pickle's own
    reference to a class makes both ends import the module's parent packages, and gymnax's package
    __init__, which a run skips (`envs.gymnax`), imports matplotlib, pandas and seaborn (over a second)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) and obj.__module__ != "builtins":
            return _resolve, (obj.__module__, obj.__qualname__)
        return NotImplemented


def _unpack(data: bytes) -> tuple[Any, jax.export.Exported]:
    """(output treedef, Exported) of a stored program; ValueError when the bytes are not one."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
        raise ValueError("not a stored program")
    (size,) = struct.unpack_from("<Q", data, len(MAGIC))
    start = len(MAGIC) + 8
    try:
        out_tree = pickle.loads(data[start : start + size])
        exported = jax.export.deserialize(bytearray(data[start + size :]))
    except Exception as err:  # any torn or foreign file: the caller exports the program again
        raise ValueError(f"unreadable stored program: {err}") from err
    return out_tree, exported


def _export(fun: Callable[..., Any], args: tuple[Any, ...], options: Mapping[str, Any]) -> tuple[Any, Any]:
    """(output treedef, Exported) of `fun(*args)` as a function of the flat leaves of `args`."""
    in_tree = jax.tree.structure(args)
    out_trees: list[Any] = []

    def flat(*leaves: Any) -> list[Any]:
        out = fun(*jax.tree.unflatten(in_tree, leaves))
        out_leaves, out_tree = jax.tree.flatten(out)
        out_trees.append(out_tree)
        return out_leaves

    jitted = jax.jit(flat, compiler_options=dict(options) or None)
    exported = jax.export.export(jitted, platforms=[jax.default_backend()])(*jax.tree.leaves(args))
    return out_trees[0], exported


def program_paths(
    store: Path, name: str, key: Mapping[str, Any], args: Any, options: Mapping[str, Any]
) -> tuple[Path, Path]:
    """(the stored program's file, the marker that says it is not to be stored) in `store`."""
    path = store / f"{name}-{program_key(name, key, args, options)[:40]}.program"
    return path, path.with_suffix(".unexportable")


def load_or_export(
    path: Path, marker: Path, fun: Callable[..., Any], args: tuple[Any, ...], options: Mapping[str, Any]
) -> tuple[Any, jax.export.Exported] | None:
    """(output treedef, Exported) for `fun(*args)` from the stored file `path` (`program_paths`),
    exporting and writing it when it is not there; None when `marker` exists or `jax.export` cannot
    serialise `fun` (the marker then records why)."""
    if marker.exists():
        return None
    try:
        return _unpack(path.read_bytes())
    except (OSError, ValueError):
        pass
    try:
        out_tree, exported = _export(fun, args, options)
        data = _pack(out_tree, exported)
    except Exception as err:  # effects, host callbacks or custom calls export refuses: traced as usual
        _write_quietly(marker, f"{type(err).__name__}: {err}\n".encode())
        return None
    _write_quietly(path, data)
    return out_tree, exported


def _write_quietly(path: Path, data: bytes) -> None:
    """Write `path` atomically; a store that cannot be written changes nothing but speed."""
    with contextlib.suppress(OSError):
        write_bytes_atomic(path, data)


def compile_program(
    fun: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    name: str,
    key: Mapping[str, Any],
    store: Path | None,
    compiler_options: Mapping[str, Any] | None = None,
) -> Callable[..., Any]:
    """`fun` compiled for the abstract `args` (a tuple of pytrees of `jax.ShapeDtypeStruct`), on one device.

    With a `store`, the program comes from (or goes into) it under `program_key(name, key, ...)`:
    `key` must hold everything `fun`'s trace depends on beyond the shapes of `args` (the config, the
    program's static sizes). Without one, or when the program cannot be exported, it is
    `jax.jit(fun).lower(*args).compile()`. Either way the result takes the same pytrees as `fun` and
    returns its pytree; both compile the same StableHLO, so they compute the same bits.
    """
    options = dict(compiler_options or {})
    paths = program_paths(store, name, key, args, options) if store is not None else None
    loaded = load_or_export(*paths, fun, args, options) if paths is not None else None
    if loaded is None:
        return jax.jit(fun, compiler_options=options or None).lower(*args).compile()
    out_tree, exported = loaded
    try:
        compiled = jax.jit(exported.call, compiler_options=options or None).lower(*jax.tree.leaves(args)).compile()
    except Exception as err:  # a stored program this process cannot compile: traced, and not stored again
        assert paths is not None
        _write_quietly(paths[1], f"{type(err).__name__}: {err}\n".encode())
        return jax.jit(fun, compiler_options=options or None).lower(*args).compile()

    def call(*values: Any) -> Any:
        return jax.tree.unflatten(out_tree, compiled(*jax.tree.leaves(values)))

    return call
