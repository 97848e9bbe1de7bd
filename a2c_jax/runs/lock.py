"""One writer per output directory: an exclusive lock held for the life of the process that writes a
run directory (`train`), a sweep's or PBT's `--out`, an RLHF `--out` or a stage it trains.

The lock is `fcntl.flock` on DIR/.a2c-jax.lock, which also holds the holder's pid, host, command and
start time (for the message that refuses a second writer). The kernel releases a flock when its
process dies, however it dies, so a lock file left by a killed process is simply taken over: no stale
lock ever blocks a run. Where the file system has no flock (some network file systems), the pid and
host in the file decide: a holder on this host whose pid is gone is stale and replaced; a live one, or
one on another host, holds. Readers (`a2c-jax eval`) take no lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from a2c_jax.config import ConfigError

LOCK_NAME = ".a2c-jax.lock"


def entries(directory: Path) -> list[Path]:
    """What `directory` holds besides its lock file (for "is it empty?" checks)."""
    return [p for p in directory.iterdir() if p.name != LOCK_NAME] if directory.is_dir() else []


def _describe(holder: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')}, `{holder.get('command', '?')}` since {since}"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(holder: dict[str, Any]) -> bool:
    """True unless the holder ran on this host and its pid is gone (another host cannot be checked)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return bool(holder)
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DirectoryLock:
    """An exclusive lock on `directory` (created if missing) for one writer; `field` names the flag
    in the refusal ("run_dir", "out")."""

    def __init__(self, directory: Path, field: str) -> None:
        self.directory, self.field = directory, field
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        """Take the lock, or raise ConfigError (exit 2) naming the process that holds it."""
        shown = f"{self.field}={str(self.directory)!r}"
        try:
            if self.directory.exists() and not self.directory.is_dir():
                raise ConfigError(f"{shown} is a file: must be a directory")
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"{shown} cannot be written ({err.strerror or err})") from None
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise self._held(_read(self.path)) from None
            holder = _read(self.path)  # no flock here: the pid and host in the file decide
            if holder and _alive(holder) and holder.get("pid") != os.getpid():
                os.close(fd)
                raise self._held(holder) from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "command": " ".join(["a2c-jax", *sys.argv[1:]])}  # fmt: skip
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def _held(self, holder: dict[str, Any]) -> ConfigError:
        return in_use(self.directory, self.field, _describe(holder) if holder else "another process")

    def release(self) -> None:
        """Give the lock up and remove its file (a no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(fd)


@contextlib.contextmanager
def locked(directory: Path, field: str, enabled: bool = True) -> Iterator[None]:
    """Hold `DirectoryLock(directory, field)` for the block (nothing when not `enabled`: the other
    processes of a multi-process run share process 0's lock)."""
    lock = DirectoryLock(directory, field).acquire() if enabled else None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def holder_of(directory: Path) -> str | None:
    """Who holds `directory`'s lock now (a description), or None when nobody does; takes nothing."""
    path = directory / LOCK_NAME
    if not path.is_file():
        return None
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return _describe(_read(path)) or "another process"
        holder = _read(path)
        return _describe(holder) if holder and _alive(holder) else None
    finally:
        os.close(fd)
    return None


def check_free(directory: Path, field: str) -> None:
    """ConfigError (exit 2) naming the holder when another process writes `directory` now."""
    who = holder_of(directory)
    if who is not None:
        raise in_use(directory, field, who)


def in_use(directory: Path, field: str, who: str) -> ConfigError:
    """The one-line refusal of a second writer."""
    return ConfigError(
        f"{field}={str(directory)!r} is in use by another a2c-jax process ({who}): one writer per directory; "
        "wait for it to finish or choose another"
    )
