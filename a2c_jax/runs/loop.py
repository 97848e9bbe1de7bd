"""The one host loop every long job runs through: `a2c-jax train`, every RLHF stage, and the programs
built on them. It calls a compiled chunk of steps, hands each chunk's metrics to the job's records,
checkpoints at safe points (periodically, at the end, before stopping on a signal, and the last good
state before reporting divergence), and stops all processes of a run at the same chunk.

The loop knows nothing of what it trains: a `Job` gives it the pieces. So every job resumes, stops on
SIGINT/SIGTERM (exit 130/143 with a checkpoint and the command that continues it) and reports a
non-finite loss as divergence (exit 1) in the same way, with the same tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

State = TypeVar("State")


class Diverged(RuntimeError):
    """The loss or parameters became non-finite; the last good state was checkpointed."""


class ChunkFailed(RuntimeError):
    """Something a chunk calls on the host failed (a user's reward function, say); raised by `run_chunk`,
    the loop checkpoints the state before that chunk and re-raises it with the way to continue."""


class Interrupted(RuntimeError):
    """Ctrl-C (SIGINT) or SIGTERM: the last completed chunk was checkpointed and the job can be resumed."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


def chunk_length(total: int, points: int) -> int:
    """Steps per compiled chunk when `total` steps are split into about `points` chunks (at least 1;
    the last chunk may be shorter): the one chunking rule of every job."""
    return max(1, math.ceil(total / max(points, 1)))


@contextlib.contextmanager
def graceful_stop(log: Callable[[str], None]) -> Iterator[Callable[[], int]]:
    """Defer SIGINT and SIGTERM to safe points: yields `requested()` -> the signal number, or 0.

    The first signal only asks the host loop to checkpoint and stop after the current chunk (an
    exception raised inside XLA's compiler or orbax's writer could crash the process or tear a file);
    a second Ctrl-C interrupts at once. Outside the main thread signals cannot be caught: no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return
    requested: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.append(signum)
        name = signal.Signals(signum).name
        log(f"{name}: stopping at the next safe point with a checkpoint (Ctrl-C again to stop at once)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: requested[0] if requested else 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Signalled(KeyboardInterrupt):
    """SIGINT or SIGTERM inside `signals_raise`: a KeyboardInterrupt that remembers which signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_raise() -> Iterator[Callable[[], None]]:
    """Within the block SIGINT and SIGTERM both raise `Signalled`, for code that cleans up on a
    KeyboardInterrupt (an Optuna study requeues its running trials, on SIGTERM as on SIGINT). Outside
    the main thread signals cannot be caught: no-op.

    Yields `check()`, which raises `Signalled` again when a signal has arrived: Python runs a handler
    at the next bytecode, which after a long compiled call can be inside a `__del__` or a weakref
    callback, where its exception is printed and dropped. Calling `check()` at safe points (after each
    round of work) keeps such a signal from being lost."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    pending: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        pending.append(signum)
        raise Signalled(signum)

    def check() -> None:
        if pending:
            raise Signalled(pending[0])

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield check
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclasses.dataclass
class Job(Generic[State]):
    """What the host loop needs from a job.

    Attributes:
        run_chunk: (state, n) -> (state after n steps, metrics of the chunk); compiled, blocking.
        total: steps of the whole job; the loop runs from the state's step to `total`.
        chunk: steps per chunk (`chunk_length`); the last chunk may be shorter.
        record: (new state, metrics, steps done before the chunk, n) -> None: writes the chunk's
            records (metrics file, trackers, progress); returns the index within the chunk of the
            first non-finite step, or None. A non-None answer checkpoints the last good state and
            raises `Diverged`; nothing of the bad chunk is adopted.
        save: checkpoint a state (all processes call it together).
        resume_hint: the command that continues the job, for the interruption message.
        what: what one step is called in messages ("update", "step").
        describe: step -> how messages name it (default "{what} {step}").
        checkpoints: where the checkpoints go, for the divergence message.
        checkpoint_seconds: minimum wall-clock between periodic checkpoints.
        stop_requested: the pending signal number, or 0 (`graceful_stop`).
        agree: every process's vote -> True when any process votes True (one process: `bool`).
    """

    run_chunk: Callable[[State, int], tuple[State, Any]]
    total: int
    chunk: int
    record: Callable[[State, Any, int, int], int | None]
    save: Callable[[State], None]
    resume_hint: str
    what: str = "update"
    describe: Callable[[int], str] | None = None
    checkpoints: str = ""
    checkpoint_seconds: float = 60.0
    stop_requested: Callable[[], int] = lambda: 0
    agree: Callable[[bool], bool] = bool


@dataclasses.dataclass
class LoopClock:
    """Where the time of a loop went: compiling (the first chunk's call, measured by the job) and
    running chunks, and the step the loop started from."""

    start_step: int = 0
    train_seconds: float = 0.0


def run_loop(job: Job[State], state: State, done: int, clock: LoopClock | None = None) -> State:
    """Run `job` from step `done` to `job.total`; returns the final state (checkpointed).

    Raises `Interrupted` (after a checkpoint) when a signal was requested, `Diverged` (after
    checkpointing the last good state) when `job.record` reports a non-finite step, `ChunkFailed`
    (after checkpointing the state before the chunk) when `job.run_chunk` raised it.
    """
    clock = clock if clock is not None else LoopClock()
    clock.start_step = done

    def stop(signum: int) -> Interrupted:
        job.save(state)
        return Interrupted(
            f"interrupted at {job.what} {done}/{job.total}; checkpoint saved: continue with `{job.resume_hint}`", signum
        )

    try:
        last_ckpt = time.perf_counter()
        while done < job.total:
            if job.agree(bool(job.stop_requested())):  # every process stops at the same chunk
                raise stop(job.stop_requested() or signal.SIGTERM)
            n = min(job.chunk, job.total - done)
            t = time.perf_counter()
            try:
                new_state, metrics = job.run_chunk(state, n)
            except ChunkFailed as err:
                job.save(state)
                where = f" in {job.checkpoints!r}" if job.checkpoints else ""
                raise ChunkFailed(
                    f"{err} during {job.what}s {done + 1}-{done + n}; the last good state ({job.what} {done}) is "
                    f"checkpointed{where}: fix the cause and continue with `{job.resume_hint}`"
                ) from None
            clock.train_seconds += time.perf_counter() - t
            # records first, then adopt the state: an interruption in between leaves records past the
            # checkpoint, which resuming truncates, never a checkpoint without its records
            bad = job.record(new_state, metrics, done, n)
            if bad is not None:
                job.save(state)
                name = job.describe or (lambda step: f"{job.what} {step}")
                where = f" in {job.checkpoints!r}" if job.checkpoints else ""
                raise Diverged(
                    f"non-finite loss or parameters at {name(done + bad + 1)}; stopped, and the last good state "
                    f"({job.what} {done}) is checkpointed{where}"
                )
            state, done = new_state, done + n
            due = time.perf_counter() - last_ckpt >= job.checkpoint_seconds
            if job.agree(due) and done < job.total:
                job.save(state)
                last_ckpt = time.perf_counter()
        job.save(state)
        if job.agree(bool(job.stop_requested())):  # the signal came during the last chunk: stop here
            raise stop(job.stop_requested() or signal.SIGTERM)
    except KeyboardInterrupt:
        raise stop(signal.SIGINT) from None
    return state
