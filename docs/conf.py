"""Sphinx configuration: MyST Markdown pages, an API reference from the docstrings (autodoc), and the
results page generated from benchmarks/results/*.json before every build. CI builds with
`sphinx-build -W --keep-going -b html docs docs/_build/html`: every warning, a broken cross-reference
or a missing page included, fails the build."""

from __future__ import annotations

import re
import sys
from importlib.metadata import version as _version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import gen_results  # noqa: E402  (docs/gen_results.py)

gen_results.main()

project = "a2c_jax"
author = "the a2c_jax maintainers"
release = _version("a2c-jax")
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
suppress_warnings = ["myst.xref_missing_title"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_mock_imports = ["brax", "craftax", "optuna", "wandb", "tensorboardX", "torch"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False

html_theme = "furo"
html_title = f"a2c_jax {release}"
napoleon_use_ivar = True

# The docstrings are plain text written for `help()`: shapes such as [T, N, *obs_shape] and absolute
# values such as |u| would read as reStructuredText emphasis and substitutions, so they become literals.
_LITERAL = re.compile(r"``.*?``|`[^`]*`|\[[^\[\]\n]*\*[^\[\]\n]*\]|\|[^|\n]+\|")


def _literal(match: re.Match[str]) -> str:
    text = match.group(0)
    return text if text.startswith("`") else f"``{text}``"


def _plain_text_docstring(app, what, name, obj, options, lines) -> None:
    lines[:] = [_LITERAL.sub(_literal, line) for line in lines]


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _plain_text_docstring, priority=100)
