"""The README and the documentation stay true: every Python block in them compiles, and runs (each in a
fresh process, in an empty directory) unless the line before it says `<!-- no-run: REASON -->`; the
README stays a front door (at most 250 lines) whose links reach files that exist; the results page is
generated from every results file, each with its machine and date."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)```", re.S)
NO_RUN = re.compile(r"<!-- no-run: (?P<reason>[^>]+) -->")
GENERATED = ROOT / "docs" / "benchmarks" / "results.md"


def python_blocks() -> list[tuple[str, str, str | None]]:
    """(page:line, code, reason not to run it or None) for every ```python block of the pages."""
    blocks = []
    for page in PAGES:
        if page == GENERATED or "_build" in page.parts:
            continue
        text = page.read_text()
        for match in FENCE.finditer(text):
            line = text[: match.start("code")].count("\n") + 1
            skip = NO_RUN.search(match.group("before"))
            name = f"{page.relative_to(ROOT)}:{line}"
            blocks.append((name, match.group("code"), skip.group("reason") if skip else None))
    return blocks


BLOCKS = python_blocks()


def test_the_pages_have_python_blocks_and_each_compiles():
    assert len(BLOCKS) >= 4, [name for name, _, _ in BLOCKS]
    for name, code, _ in BLOCKS:
        compile(code, name, "exec")  # a syntax error fails here, with the page and line


@pytest.mark.slow
@pytest.mark.parametrize(("name", "code", "reason"), BLOCKS, ids=[name for name, _, _ in BLOCKS])
def test_python_block_runs(name, code, reason, tmp_path):
    if reason is not None:
        pytest.skip(f"{name}: {reason}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if "A2C_JAX_CACHE_DIR" in os.environ:  # the session's compilation cache: blocks that share programs share it
        env["JAX_COMPILATION_CACHE_DIR"] = os.environ["A2C_JAX_CACHE_DIR"]
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-3000:]}"


def test_the_readme_is_a_front_door_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert local, "the README links into the docs"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing
    # both set-up commands, and the test command CI runs, are in it
    assert "pip install . && a2c-jax train" in text and "&& python -m pytest\n" in text


def test_the_results_page_is_generated_from_every_results_file():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_results
    finally:
        sys.path.remove(str(ROOT / "docs"))
    page = gen_results.render()
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert files
    for path in files:
        assert f"## {path.stem}\n" in page and f"`benchmarks/results/{path.name}`" in page
    sections = page.split("\n## ")[1:]
    assert len(sections) == len(files)
    assert all("**Machine:**" in s and "**date:**" in s for s in sections)


def test_the_readmes_table_against_pytorch_is_generated_from_its_results_file():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_results
    finally:
        sys.path.remove(str(ROOT / "docs"))
    text = (ROOT / "README.md").read_text()
    table = gen_results.headline()
    assert table in text, "README.md's table is stale: run `python docs/gen_results.py`"
    data = json.loads((ROOT / "benchmarks" / "results" / f"{gen_results.HEADLINE}.json").read_text())
    assert data["repeats"] >= 5 and data["commit"] and data["command"]
    for row in data["rows"]:  # each figure is the median of the file's repeats, with its range beside it
        for stats in row["contenders"].values():
            if "median" in stats:
                assert len(stats["repeats"]) == data["repeats"] and stats["min"] <= stats["median"] <= stats["max"]
        assert f"| {row['num_envs']:,} | {round(row['contenders']['a2c_jax']['median']):,} |" in table
