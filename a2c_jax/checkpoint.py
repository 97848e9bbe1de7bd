"""Atomic orbax checkpoints of a TrainState plus JSON metadata, and their restore.

Checkpoints live in RUN_DIR/checkpoints/<update>/. orbax writes each one into a temporary directory
and renames it only once complete, so an interrupted save never replaces the last good checkpoint;
the two newest are kept.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from a2c_jax.config import ConfigError

KEEP = 2

# orbax logs every save at INFO level; keep the console for the progress bar.
logging.getLogger("absl").setLevel(logging.WARNING)


class CheckpointError(ConfigError):
    """A checkpoint is missing, unreadable or does not match the run's configuration."""


def _manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=KEEP, enable_async_checkpointing=False, create=True)
    return ocp.CheckpointManager(directory.absolute(), options=options)


def save_checkpoint(directory: Path, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Write `state` (any pytree of arrays) and JSON `meta` as checkpoint `step`, atomically."""
    with _manager(directory) as mngr:
        mngr.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        mngr.wait_until_finished()


def latest_step(directory: Path) -> int | None:
    """The newest complete checkpoint's step, or None when there is none."""
    if not directory.is_dir():
        return None
    with _manager(directory) as mngr:
        return mngr.latest_step()


def restore_checkpoint(directory: Path, like: Any) -> tuple[Any, dict[str, Any], int]:
    """Restore the newest checkpoint into the structure of `like`.

    Returns (state, meta, step). Raises CheckpointError when none exists or it cannot be read.
    """
    step = latest_step(directory)
    if step is None:
        raise CheckpointError(f"no checkpoint found in {str(directory)!r}")
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
    try:
        with _manager(directory) as mngr:
            restored = mngr.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
            )
    except Exception as err:  # orbax raises many types for truncated or mismatched files
        raise CheckpointError(
            f"checkpoint {str(directory / str(step))!r} is corrupt or does not match this run's "
            f"configuration ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    return restored["state"], dict(restored["meta"]), step
