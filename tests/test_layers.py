"""The package's layers import only downward: config -> envs -> core -> runs -> population -> rlhf -> cli.

Every `import a2c_jax...` / `from a2c_jax... import` in every module (function-level and
TYPE_CHECKING imports included) is read with `ast` and checked against the layer order, so an upward
import fails here before it becomes a cycle or drags a heavy dependency into the compiled core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "a2c_jax"
LAYERS = ["_lazy", "config", "presets", "envs", "core", "runs", "population", "rlhf", "cli", "_entry"]
RANK = {name: (0 if name in ("_lazy", "config", "presets") else LAYERS.index(name) - 2) for name in LAYERS}
RANK["_entry"] = RANK["cli"]  # the console script: the CLI's own first module, outside the package so it imports first
# the compiled core must not pull in these (DESIGN.md); commands import them on the paths that use them
HEAVY = ("matplotlib", "rich", "orbax", "optuna", "tensorboardX", "wandb", "transformers", "torch")


def layer_of(module: str) -> str:
    """'a2c_jax.core.train' -> 'core'; the package root itself is the facade ('')."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file."""
    module = "a2c_jax." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    module = module.removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if base == "a2c_jax"]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name != "__init__.py")


def test_every_module_belongs_to_a_layer():
    assert {layer_of("a2c_jax." + p.relative_to(PACKAGE).with_suffix("").parts[0]) for p in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_only_downward(path):
    own = layer_of("a2c_jax." + path.relative_to(PACKAGE).with_suffix("").parts[0])
    upward = []
    for line, name in imports(path):
        if name == "a2c_jax" or not name.startswith("a2c_jax."):
            continue
        target = layer_of(name)
        if target in RANK and RANK[target] > RANK[own]:
            upward.append(f"line {line}: {name} ({target} is above {own})")
    assert not upward, f"{path.relative_to(PACKAGE)} imports upward: " + "; ".join(upward)


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").rglob("*.py")), ids=lambda p: p.name)
def test_the_core_imports_no_heavy_dependency(path):
    heavy = [f"line {line}: {name}" for line, name in imports(path) if name.split(".")[0] in HEAVY]
    assert not heavy, f"core/{path.name} imports " + "; ".join(heavy)


def test_a_planted_upward_import_is_caught(tmp_path):
    """The check can fail: a core module that imports the CLI is reported."""
    fake = tmp_path / "a2c_jax" / "core" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from a2c_jax.cli import main\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "a2c_jax"
    try:
        with pytest.raises(AssertionError, match=r"imports upward: line 2: a2c_jax\.cli \(cli is above core\)"):
            test_imports_run_only_downward(fake)
    finally:
        PACKAGE = saved
