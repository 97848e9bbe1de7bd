"""Render every `benchmarks/results/*.json` as a page of tables: `docs/benchmarks/results.md`.

The documentation build runs this first (`docs/conf.py`), so the results page is made from the files
themselves and never copied by hand. Each file becomes a section with its machine and date, the command
that made it where the file records one, its scalar fields, and one table per list or mapping of
records. Long series (learning curves, per-update metrics, samples) are summarised, not printed.

It also writes the README's table against PyTorch (between its two markers) from
`benchmarks/results/cpu-throughput-vs-torch.json`.

    python docs/gen_results.py            # writes docs/benchmarks/results.md and the README's table
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAGE = Path(__file__).resolve().parent / "benchmarks" / "results.md"
SKIP = {"machine", "metrics", "samples", "stdout_tail", "curve", "curves"}
MAX_ROWS = 40


def number(x: float) -> str:
    """A number as a table shows it: integers with separators, floats to 4 significant digits."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.4g}"
    return f"{x:.4g}"


def cell(value: Any) -> str:
    """One table cell: scalars printed, short lists of scalars joined, longer ones summarised."""
    if isinstance(value, bool | int | float):
        return number(value)
    if value is None:
        return "-"
    if isinstance(value, str):
        text = value if len(value) <= 240 else value[:237] + "..."
        return text.replace("|", "\\|").replace("\n", " ")
    if isinstance(value, list) and all(isinstance(v, bool | int | float) for v in value):
        if len(value) <= 8:
            return ", ".join(number(v) for v in value)
        finite = [v for v in value if isinstance(v, int | float) and math.isfinite(v)]
        if not finite:
            return f"{len(value)} values"
        return f"{len(value)} values, {number(min(finite))} to {number(max(finite))}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return cell(", ".join(value))
    return f"({type(value).__name__} of {len(value)})"


def table(records: list[dict[str, Any]], first: str | None = None) -> list[str]:
    """A Markdown table of records (dicts): one column per key that holds a printable value."""
    columns: list[str] = [first] if first else []
    for rec in records:
        for key, value in rec.items():
            if key not in columns and key not in SKIP and not isinstance(value, dict):
                columns.append(key)
    if not columns:
        return []
    shown = records[:MAX_ROWS]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(rec.get(c)) for c in columns) + " |" for rec in shown]
    if len(records) > MAX_ROWS:
        lines.append(f"\n({len(records) - MAX_ROWS} more rows in the file)")
    return lines


def is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def machine_line(machine: dict[str, Any]) -> str:
    """Where and when: the machine's CPU or device, cores, memory, software versions and the date."""
    parts = [str(machine[k]) for k in ("device_kind", "gpu", "cpu") if machine.get(k)]
    if machine.get("cores"):
        parts.append(f"{machine['cores']} cores")
    if machine.get("memory_gib"):
        parts.append(f"{machine['memory_gib']} GiB")
    for key in ("python", "jax", "jax_backend", "torch", "commit"):
        if machine.get(key):
            parts.append(f"{key} {machine[key]}")
    return f"**Machine:** {', '.join(parts) or 'not recorded'}; **date:** {machine.get('date', 'not recorded')}"


def section(path: Path) -> list[str]:
    """The Markdown section for one results file."""
    data = json.loads(path.read_text())
    if isinstance(data, list):
        data = {"rows": data}
    out = [f"## {path.stem}", "", f"File `benchmarks/results/{path.name}`.", ""]
    out += [machine_line(data.get("machine") or {}), ""]
    scalars: list[dict[str, Any]] = []
    tables: list[tuple[str, list[str]]] = []
    for key, value in data.items():
        if key in SKIP:
            continue
        if is_records(value):
            tables.append((key, table(value)))
            tables += nested_tables(key, value)
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            tables.append((key, table([{"name": k, **v} for k, v in value.items()], first="name")))
            tables += [(f"{key}, {k}: {f}", table(r)) for k, v in value.items() for f, r in v.items() if is_records(r)]
        elif isinstance(value, dict) and value and all(is_records(v) for v in value.values()):
            rows = [{"name": k, "repeat": i + 1, **r} for k, v in value.items() for i, r in enumerate(v)]
            tables.append((key, table(rows, first="name")))
        elif isinstance(value, dict):
            scalars += [{"field": f"{key}.{k}", "value": v} for k, v in value.items() if not isinstance(v, dict)]
        else:
            scalars.append({"field": key, "value": value})
    if scalars:
        out += [*table(scalars), ""]
    for key, lines in tables:
        if lines:
            out += [f"**{key}**", "", *lines, ""]
    return out


def nested_tables(key: str, records: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Records whose fields hold mappings of records (a row of contenders, say): one more table per
    record and field, titled by the record's first scalar field."""
    out = []
    for rec in records:
        label = next((f"{k} {cell(v)}" for k, v in rec.items() if isinstance(v, bool | int | float | str)), "")
        for field, value in rec.items():
            if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
                out.append((f"{key}, {label}: {field}", table([{"name": k, **v} for k, v in value.items()], "name")))
            elif isinstance(value, dict) and value:
                out.append((f"{key}, {label}: {field}", table([{"field": k, "value": v} for k, v in value.items()])))
    return out


HEADLINE = "cpu-throughput-vs-torch"
BEGIN, END = f"<!-- generated from benchmarks/results/{HEADLINE}.json -->", "<!-- end of generated table -->"


def headline(results: Path = RESULTS) -> str:
    """The README's table against PyTorch, made from `benchmarks/results/cpu-throughput-vs-torch.json`:
    per env count, each side's median env steps/s and a2c_jax's best over the fastest PyTorch variant
    and over SB3's best thread count."""
    data = json.loads((results / f"{HEADLINE}.json").read_text())
    m = data["machine"]
    intro = (
        f"Median training env steps/s of {data['repeats']} interleaved repeats on {m['cpu']} ({m['cores']} cores), "
        f"jax {m['jax']}, torch {m.get('torch', '?')}, {m['date']}, {data.get('precision', 'default')} matmuls, "
        f"commit `{str(data.get('commit'))[:10]}`; `{data.get('command')}` "
        f"(`benchmarks/results/{HEADLINE}.json`; the ranges are on the results page):"
    )
    lines = [
        BEGIN,
        *textwrap.wrap(intro, 104, break_on_hyphens=False),
        "",
        "| envs | a2c_jax | a2c_jax, both cores | fastest PyTorch (variant, threads) | SB3 A2C | vs PyTorch | vs SB3 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [headline_row(row) for row in data["rows"]]
    return "\n".join([*lines, END])


def variant_label(name: str) -> str:
    """'torch_compile_2t' -> 'torch.compile, 2 threads'; 'torch_eager_1t' -> 'eager, 1 thread'."""
    _, variant, threads = name.split("_")
    count = int(threads.removesuffix("t"))
    kind = {"compile": "torch.compile", "eager": "eager", "gymnasium": "gymnasium envs"}.get(variant, variant)
    return f"{kind}, {count} thread{'s' if count > 1 else ''}"


def headline_row(row: dict[str, Any]) -> str:
    """One env count of the README's table (`-` where a contender did not run at that size)."""
    c, r = row["contenders"], row["ratios"]

    def rate(name: str | None) -> str:
        return number(round(c[name]["median"])) if name and "median" in c.get(name, {}) else "-"

    sb3_runs = [n for n in c if n.startswith("sb3_") and "median" in c[n]]
    sb3 = max(sb3_runs, key=lambda n: c[n]["median"], default=None)
    fastest = r.get("fastest_torch")
    torch_cell = f"{rate(fastest)} ({variant_label(fastest)})" if fastest else "-"
    keys = ("a2c_jax_any_devices_over_fastest_torch", "a2c_jax_any_devices_over_sb3")
    ratio = [f"{r[k]:.1f}x" if k in r else "-" for k in keys]
    cells = [number(row["num_envs"]), rate("a2c_jax"), rate("a2c_jax_all_cores"), torch_cell, rate(sb3), *ratio]
    return "| " + " | ".join(cells) + " |"


def update_readme(readme: Path = ROOT / "README.md") -> None:
    """Replace the README's generated table with `headline()`."""
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + headline() + text[end:])


def render(results: Path = RESULTS) -> str:
    """The whole results page: an introduction, then one section per file in name order."""
    files = sorted(results.glob("*.json"))
    out = [
        "# All results",
        "",
        "Generated by `docs/gen_results.py` from the files in `benchmarks/results/` when the documentation",
        "is built: nothing on this page is typed by hand. Each section names its file, the machine and the",
        "date; what the numbers show, and the targets they met or missed, are in [the notes](notes.md).",
        "Ratios count only between rows of one file, measured side by side.",
        "",
    ]
    for path in files:
        out += section(path)
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(render())
    update_readme()


if __name__ == "__main__":
    main()
