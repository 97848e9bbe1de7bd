"""The store of exported programs (`runs.programs`): a warm run loads what a cold run exported, computes
the same bits as a run that traces, and every way the store can fail leaves the run as it would be
without it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL

from a2c_jax.config import HParams
from a2c_jax.runs import programs
from a2c_jax.runs.programs import MAGIC, compile_program
from a2c_jax.runs.runner import RunSettings, train_run

SETTINGS = RunSettings(progress=False, log_points=3, eval_episodes=4)


def _rows(run: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k != "wall_seconds"}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


def _no_export(*args, **kwargs):
    raise AssertionError("a warm run exported a program again instead of loading it")


@pytest.mark.slow
def test_a_warm_run_loads_its_programs_and_computes_the_same_bits(tmp_path, monkeypatch):
    store = tmp_path / "programs"
    log: list[str] = []
    traced = train_run(SMALL, HParams(), tmp_path / "traced", SETTINGS, log=log.append)
    cold = train_run(SMALL, HParams(), tmp_path / "cold", SETTINGS, log=log.append, programs=store)
    assert sorted(p.name.split("-")[0] for p in store.glob("*.program")) == ["chunk", "evaluate", "init"]
    assert not list(store.glob("*.unexportable")), [p.read_text() for p in store.glob("*.unexportable")]
    monkeypatch.setattr(programs, "_export", _no_export)
    warm = train_run(SMALL, HParams(), tmp_path / "warm", SETTINGS, log=log.append, programs=store)
    assert _rows(tmp_path / "traced") == _rows(tmp_path / "cold") == _rows(tmp_path / "warm")
    assert traced["eval_return_mean"] == cold["eval_return_mean"] == warm["eval_return_mean"]
    # another seed runs the same programs
    reseeded = dataclasses.replace(SETTINGS, seed=3)
    train_run(SMALL, HParams(), tmp_path / "seed", reseeded, log=log.append, programs=store)
    assert len(list(store.glob("*.program"))) == 3


F_ARGS = (jax.ShapeDtypeStruct((3,), jnp.float32), {"n": jax.ShapeDtypeStruct((), jnp.int32)})


def _f(x: jax.Array, extra: dict) -> tuple[jax.Array, dict]:
    return x * extra["n"], {"total": x.sum()}


def _check(program) -> None:
    out, aux = program(jnp.arange(3.0), {"n": jnp.int32(2)})
    np.testing.assert_array_equal(np.asarray(out), [0.0, 2.0, 4.0])
    assert float(aux["total"]) == 3.0


def test_a_torn_file_is_exported_again_and_keys_separate_programs(tmp_path, monkeypatch):
    _check(compile_program(_f, F_ARGS, name="f", key={"k": 1}, store=tmp_path))
    (path,) = tmp_path.glob("f-*.program")
    path.write_bytes(path.read_bytes()[:100])  # a torn or foreign file
    _check(compile_program(_f, F_ARGS, name="f", key={"k": 1}, store=tmp_path))
    assert path.read_bytes().startswith(MAGIC) and len(path.read_bytes()) > 100
    _check(compile_program(_f, F_ARGS, name="f", key={"k": 2}, store=tmp_path))
    assert len(list(tmp_path.glob("f-*.program"))) == 2
    monkeypatch.setattr(programs, "_export", _no_export)
    _check(compile_program(_f, F_ARGS, name="f", key={"k": 2}, store=tmp_path))


def test_a_program_export_refuses_is_traced_and_not_tried_again(tmp_path, monkeypatch):
    def with_callback(x: jax.Array, extra: dict) -> tuple[jax.Array, dict]:
        doubled = jax.pure_callback(lambda a: np.asarray(a) * 2, jax.ShapeDtypeStruct((3,), jnp.float32), x)
        return doubled * extra["n"] / 2, {"total": x.sum()}

    _check(compile_program(with_callback, F_ARGS, name="cb", key={}, store=tmp_path))
    (marker,) = tmp_path.glob("cb-*.unexportable")
    assert "host_callbacks" in marker.read_text()
    assert not list(tmp_path.glob("cb-*.program"))
    monkeypatch.setattr(programs, "_export", _no_export)
    _check(compile_program(with_callback, F_ARGS, name="cb", key={}, store=tmp_path))


@pytest.mark.parametrize("store", [Path("/dev/null/programs"), None])
def test_a_store_that_cannot_be_written_or_none_changes_nothing_but_speed(store):
    _check(compile_program(_f, F_ARGS, name="f", key={}, store=store))


def test_a_stored_treedef_imports_nothing_the_run_skipped():
    """The output treedef of a CartPole program names gymnax's CartPole class; pickle's own reference
    would import gymnax's package __init__ (matplotlib, pandas, seaborn: over a second) at both ends."""
    code = (
        "import sys, jax\n"
        "from a2c_jax.config import preset\n"
        "from a2c_jax.core.train import build_agent\n"
        "from a2c_jax.runs.programs import _pack, _unpack\n"
        "from a2c_jax.runs.runner import abstract_state\n"
        "state = abstract_state(build_agent(preset('default')[0]))\n"
        "exported = jax.export.export(jax.jit(lambda x: x))(jax.ShapeDtypeStruct((1,), 'float32'))\n"
        "tree = jax.tree.structure(state)\n"
        "assert _unpack(_pack(tree, exported))[0] == tree\n"
        "print(sorted(m for m in ('gymnax', 'matplotlib', 'pandas', 'seaborn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


def test_a_stored_program_that_does_not_compile_is_traced_and_not_loaded_again(tmp_path):
    """A file under the right name holding a program of other shapes (as a foreign or stale file could):
    the run traces instead, and the marker keeps later runs from loading it."""
    path, marker = programs.program_paths(tmp_path, "f", {}, F_ARGS, {})
    other = (jax.ShapeDtypeStruct((4,), jnp.float32), {"n": jax.ShapeDtypeStruct((), jnp.int32)})
    path.write_bytes(programs._pack(*programs._export(_f, other, {})))
    _check(compile_program(_f, F_ARGS, name="f", key={}, store=tmp_path))
    assert marker.exists() and marker.read_text().strip()
    assert programs.load_or_export(path, marker, _f, F_ARGS, {}) is None
