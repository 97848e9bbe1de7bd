"""Wall time of the test suite (what CI runs) and of its fast tier on this machine, with the slowest tests.

Runs `python -m pytest` and `python -m pytest -m "not slow"` from the repository root, one after the
other, and records each tier's wall time, its outcome counts and the slowest tests pytest reports
(`--durations`). Run it on a quiet machine: other work running beside it slows every test.

    python -m benchmarks.suite_times [--tiers full fast] [--slowest 20]
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import write_result

ROOT = Path(__file__).resolve().parent.parent
TIERS = {"full": [], "fast": ["-m", "not slow"]}
OUTCOME = r"\d+ (?:passed|failed|error|skipped|deselected)"
SUMMARY = re.compile(rf"^(?:=+ )?(?P<counts>{OUTCOME}[^\n]*?) in (?P<seconds>[0-9.]+)s", re.M)
DURATION = re.compile(r"^(?P<seconds>[0-9.]+)s (?P<phase>call|setup|teardown)\s+(?P<test>\S+)", re.M)


def default_sigint() -> None:
    """In the child: SIGINT's default handler (a background shell starts jobs with it ignored, and the
    suite's signal tests need it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_tier(extra: list[str], slowest: int) -> dict:
    """One pytest run: wall seconds, pytest's own summary, exit status and the slowest tests."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--durations={slowest}", *extra]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=3 * 3600, preexec_fn=default_sigint)
    wall = time.perf_counter() - start
    summary = SUMMARY.findall(proc.stdout)
    durations = [
        {"seconds": float(m["seconds"]), "phase": m["phase"], "test": m["test"]} for m in DURATION.finditer(proc.stdout)
    ][:slowest]
    return {
        "command": " ".join(["python", "-m", "pytest", *extra]),
        "exit_status": proc.returncode,
        "wall_seconds": wall,
        "pytest_summary": summary[-1][0] if summary else None,
        "pytest_seconds": float(summary[-1][1]) if summary else None,
        "slowest": durations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", nargs="+", choices=list(TIERS), default=list(TIERS))
    parser.add_argument("--slowest", type=int, default=20)
    parser.add_argument("--name", default="cpu-suite-times")
    args = parser.parse_args()
    tiers = {}
    for tier in args.tiers:
        tiers[tier] = run_tier(TIERS[tier], args.slowest)
        print(f"{tier}: exit {tiers[tier]['exit_status']}, {tiers[tier]['wall_seconds']:.0f}s, "
              f"{tiers[tier]['pytest_summary']}", flush=True)  # fmt: skip
    path = write_result(args.name, {"benchmark": "suite_times", "tiers": tiers})
    print(f"wrote {path}")
    if any(t["exit_status"] != 0 for t in tiers.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
