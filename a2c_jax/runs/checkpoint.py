"""Atomic orbax checkpoints of a TrainState plus JSON metadata, and their restore.

Checkpoints live in RUN_DIR/checkpoints/<update>/. orbax writes each one into a temporary directory
and renames it only once complete, so an interrupted save never replaces the last good checkpoint;
the two newest are kept. Saving a step that already exists is a no-op (training is deterministic,
so it holds the same state). Restoring falls back to the newest checkpoint that reads back intact.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax

from a2c_jax.config import ConfigError

if TYPE_CHECKING:
    import orbax.checkpoint as ocp

KEEP = 2


class CheckpointError(ConfigError):
    """A checkpoint is missing, unreadable or does not match the run's configuration (bad input: exit 2)."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a fault such as a full disk: exit 1); older ones are intact."""


def _orbax() -> Any:
    """orbax.checkpoint, imported on first use (about a second of start-up, needed only at a run's first
    checkpoint or restore)."""
    import orbax.checkpoint

    return orbax.checkpoint


def _manager(directory: Path, writer: bool = False) -> ocp.CheckpointManager:
    ocp = _orbax()
    # Leftovers of a killed save are removed only by the writer of a single-process run: a reader (an
    # `eval` while training runs) or another process would delete a save that is in progress.
    cleanup = writer and jax.process_count() == 1
    options = ocp.CheckpointManagerOptions(
        max_to_keep=KEEP, enable_async_checkpointing=False, create=writer, cleanup_tmp_directories=cleanup
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


def _save_args(state: Any, meta: dict[str, Any]) -> Any:
    args = _orbax().args
    return args.Composite(state=args.StandardSave(state), meta=args.JsonSave(meta))


def _restore_args(abstract: Any) -> Any:
    args = _orbax().args
    return args.Composite(state=args.StandardRestore(abstract), meta=args.JsonRestore())


class CheckpointWriter:
    """One orbax CheckpointManager kept open for a whole run (every process of a multi-process run
    opens it at the same point of the program, as orbax's multi-host saving expects)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._mngr: ocp.CheckpointManager | None = None

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Write `state` (any pytree of arrays) and JSON `meta` as checkpoint `step`, atomically.

        A step that already exists is left as it is. Raises CheckpointWriteError (one line, the OS
        reason) when the write fails; the checkpoints written before stay intact.
        """
        try:
            if self._mngr is None:
                self._mngr = _manager(self.directory, writer=True)
            if step in self._mngr.all_steps():
                return
            self._mngr.save(
                step,
                args=_save_args(state, meta),
                force=True,
            )
            self._mngr.wait_until_finished()
            if jax.process_index() == 0:
                _write_digest(self.directory / str(step))
        except Exception as err:  # orbax wraps OS errors in several exception types
            self.close()
            for partial in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):  # free what the write took
                shutil.rmtree(partial, ignore_errors=True)
            try:
                newest = latest_step(self.directory)
                intact = (
                    "no intact checkpoint remains" if newest is None else f"the newest intact checkpoint is {newest}"
                )
            except CheckpointError:
                intact = "the checkpoints written before it are untouched"
            raise CheckpointWriteError(
                f"could not write checkpoint {step} in {str(self.directory)!r} ({root_cause(err)}); {intact}"
            ) from None

    def close(self) -> None:
        if self._mngr is not None:
            mngr, self._mngr = self._mngr, None
            with contextlib.suppress(Exception):
                mngr.close()


def save_checkpoint(directory: Path, step: int, state: Any, meta: dict[str, Any]) -> None:
    """`CheckpointWriter(directory).save(...)` for a single checkpoint."""
    writer = CheckpointWriter(directory)
    try:
        writer.save(step, state, meta)
    finally:
        writer.close()


DIGEST = "a2c_jax_sha256.json"


def _digest(step_dir: Path) -> dict[str, str]:
    files = sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != DIGEST)
    return {str(p.relative_to(step_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _write_digest(step_dir: Path) -> None:
    """Record a SHA-256 of every file of a finished checkpoint, so a damaged one is recognised
    before orbax reads it (orbax's own failure on a torn file is a wall of TensorStore errors)."""
    from a2c_jax.runs.records import write_json_atomic

    write_json_atomic(step_dir / DIGEST, _digest(step_dir))


def verify_digest(step_dir: Path) -> None:
    """ValueError naming the first file that is missing or differs from its recorded checksum.

    Checkpoints without a digest (written by older versions) pass unverified.
    """
    path = step_dir / DIGEST
    if not path.exists():
        return
    try:
        recorded = json.loads(path.read_text())
    except ValueError:
        raise ValueError("its checksum file is damaged") from None
    actual = _digest(step_dir)
    for name, digest in recorded.items():
        if actual.get(name) != digest:
            raise ValueError(f"file {name!r} is {'missing' if name not in actual else 'damaged'}")


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


def stored_shapes(step_dir: Path) -> list[tuple[int, ...]] | None:
    """The sorted global shapes of the arrays checkpoint `step_dir` holds, from orbax's own metadata API
    (no array is read); None when orbax cannot say (then the restore alone decides)."""
    try:
        with _orbax().StandardCheckpointer() as reader:
            tree = reader.metadata((step_dir / "state").absolute()).item_metadata
        leaves = jax.tree.leaves(tree, is_leaf=lambda x: hasattr(x, "shape"))
        return sorted(tuple(int(d) for d in leaf.shape) for leaf in leaves)
    except Exception:  # any form orbax cannot describe: leave the decision to the restore
        return None


def _restore_step(directory: Path, step: int, abstract: Any) -> tuple[Any, dict[str, Any]]:
    verify_digest(directory / str(step))
    stored = stored_shapes(directory / str(step))
    wanted = sorted(tuple(int(d) for d in x.shape) for x in jax.tree.leaves(abstract))
    if stored is not None and stored != wanted:
        # refused before orbax starts a restore: a failed restore leaves orbax's threads posting to an
        # event loop it has closed, each printing a traceback after the command's own error line
        raise ValueError("its arrays have other shapes than this configuration's (hidden sizes, envs or steps differ)")
    with _manager(directory) as mngr:
        restored = mngr.restore(step, args=_restore_args(abstract))
    meta = restored["meta"]
    if not isinstance(meta, dict) or not isinstance(meta.get("update"), int):
        raise ValueError("metadata without an update count")
    return restored["state"], dict(meta)


def _sharding(x: Any) -> Any:
    """The target sharding of a leaf: its own, or this process's first device (a checkpoint written by
    another topology, several devices or processes, is resharded onto it)."""
    return getattr(x, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


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
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=_sharding(x)), like)
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
