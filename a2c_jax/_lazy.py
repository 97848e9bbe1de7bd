"""PEP 562 lazy exports for the package and its sub-packages (no imports of its own beyond the
standard library, so every layer may use it)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


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
