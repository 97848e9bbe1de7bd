"""The `a2c-jax` console script. Its first act, before any heavy import, makes SIGINT and SIGTERM
leave at once with one line ("a2c-jax: interrupted", exit 130 / 143): a Ctrl-C while JAX or XLA is
still starting can neither print a traceback from a half-imported module, nor be swallowed inside a
callback, nor crash the process. Code that must act on a signal takes it over for its own span: the
host loop defers it to its next safe point (`runs.loop.graceful_stop`), an Optuna study turns it into a
requeue of its running trials (`runs.loop.signals_raise`). Every file the commands write is written
atomically, so leaving at once leaves nothing half-written.
"""

from __future__ import annotations

import os
import signal
from types import FrameType


def leave_now(signum: int, frame: FrameType | None) -> None:
    """The signal handler outside any span that takes signals over: one line, then exit 128 + signum."""
    try:
        os.write(2, b"a2c-jax: interrupted\n")
    finally:
        os._exit(128 + signum)


def run() -> None:
    """Console-script entry point: signal handlers first, then the CLI (`a2c_jax.cli.run`)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, leave_now)
    from a2c_jax.cli import run as cli_run

    cli_run()
