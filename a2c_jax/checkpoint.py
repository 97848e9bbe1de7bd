"""Atomic orbax checkpoints of a TrainState plus JSON metadata, and their restore.

Checkpoints live in RUN_DIR/checkpoints/<update>/. orbax writes each one into a temporary directory
and renames it only once complete, so an interrupted save never replaces the last good checkpoint;
the two newest are kept. Saving a step that already exists is a no-op (training is deterministic,
so it holds the same state). Restoring falls back to the newest checkpoint that reads back intact.
"""

from __future__ import annotations

import errno
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from a2c_jax.config import ConfigError

KEEP = 2

# orbax logs every save at INFO level (and failed reads at ERROR); keep the console for our messages.
for _name in ("absl", "orbax", "orbax.checkpoint"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


class CheckpointError(ConfigError):
    """A checkpoint is missing, unreadable or does not match the run's configuration (bad input: exit 2)."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a fault such as a full disk: exit 1); older ones are intact."""


def _manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=KEEP, enable_async_checkpointing=False, create=True, cleanup_tmp_directories=True
    )
    return ocp.CheckpointManager(directory.absolute(), options=options)


def root_cause(err: BaseException) -> str:
    """A short one-line reason: the OS error behind `err` if there is one, else its first line."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return f"{seen.strerror or errno.errorcode.get(seen.errno, seen.errno)}"
        seen = seen.__cause__ or seen.__context__
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    for code, name in ((errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")):
        if name in str(err):
            return f"{name} (errno {code})"
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def save_checkpoint(directory: Path, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Write `state` (any pytree of arrays) and JSON `meta` as checkpoint `step`, atomically.

    A step that already exists is left as it is. Raises CheckpointWriteError (one line, the OS reason)
    when the write fails; the checkpoints written before stay intact.
    """
    try:
        with _manager(directory) as mngr:
            if step in mngr.all_steps():
                return
            mngr.save(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                force=True,
            )
            mngr.wait_until_finished()
    except Exception as err:  # orbax wraps OS errors in several exception types
        raise CheckpointWriteError(
            f"could not write checkpoint {step} in {str(directory)!r} ({root_cause(err)}); "
            "the checkpoints written before it are intact"
        ) from None


def checkpoint_steps(directory: Path) -> list[int]:
    """Steps of the complete checkpoints in `directory`, newest first ([] when there is none)."""
    if not directory.is_dir():
        return []
    try:
        with _manager(directory) as mngr:
            return sorted(mngr.all_steps(), reverse=True)
    except Exception as err:
        raise CheckpointError(f"checkpoints in {str(directory)!r} cannot be listed ({root_cause(err)})") from None


def latest_step(directory: Path) -> int | None:
    """The newest complete checkpoint's step, or None when there is none."""
    steps = checkpoint_steps(directory)
    return steps[0] if steps else None


def _restore_step(directory: Path, step: int, abstract: Any) -> tuple[Any, dict[str, Any]]:
    with _manager(directory) as mngr:
        restored = mngr.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        )
    meta = restored["meta"]
    if not isinstance(meta, dict) or not isinstance(meta.get("update"), int):
        raise ValueError("metadata without an update count")
    return restored["state"], dict(meta)


def restore_checkpoint(
    directory: Path, like: Any, warn: Callable[[str], None] | None = None
) -> tuple[Any, dict[str, Any], int]:
    """Restore the newest intact checkpoint into the structure of `like`.

    Returns (state, meta, step). A newer checkpoint that cannot be read is skipped with a one-line
    `warn`; CheckpointError when none exists or none can be read.
    """
    steps = checkpoint_steps(directory)
    if not steps:
        raise CheckpointError(f"no checkpoint found in {str(directory)!r}")
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
    failures: list[str] = []
    for step in steps:
        try:
            state, meta = _restore_step(directory, step, abstract)
        except Exception as err:  # orbax raises many types for truncated or mismatched files
            failures.append(f"checkpoint {step} ({root_cause(err)})")
            continue
        if failures and warn is not None:
            warn(f"skipped unreadable {'; '.join(failures)}; restored checkpoint {step}")
        return state, meta, step
    raise CheckpointError(
        f"no checkpoint in {str(directory)!r} can be read, or none matches this run's configuration: "
        + "; ".join(failures)
    )


def set_aside_newer(directory: Path, step: int) -> list[int]:
    """Move checkpoints newer than `step` (unreadable ones a resume skipped) to RUN_DIR/corrupt_checkpoints/.

    They are kept for inspection, out of orbax's way, so training can write those steps anew.
    """
    moved = [s for s in checkpoint_steps(directory) if s > step]
    if moved:
        aside = directory.parent / "corrupt_checkpoints"
        aside.mkdir(exist_ok=True)
        for s in moved:
            target = aside / str(s)
            if target.exists():
                shutil.rmtree(target)
            (directory / str(s)).rename(target)
    return moved
