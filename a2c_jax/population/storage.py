"""Optuna's storages for studies shared by many workers: opening a database or journal storage with
one-line errors, studies by name, and heartbeats for the trials a worker trains.

This is the one module that uses Optuna's private API, for one reason: Optuna records heartbeats only
inside `study.optimize`, while a population round asks several trials with `study.ask()` and trains
them together; keeping those trials alive (and letting a dead worker's trials be failed and retried)
needs the storage behind a study (`study._storage`), a trial's storage id (`trial._trial_id`) and
`optuna.storages._heartbeat.is_heartbeat_enabled`. They are reached through the three functions
below and nowhere else.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a2c_jax.config import ConfigError

if TYPE_CHECKING:
    import optuna

SCHEMA_RACE = ("UNIQUE constraint", "already exists", "duplicate key", "database is locked")
"""Errors of workers that create a database's schema at the same moment (the loser retries)."""
STUDY_ATTR = "a2c_jax"
"""The study attribute holding its signature (search space and base settings)."""


def storage_of(study: optuna.Study) -> Any:
    """The storage behind `study` (private: `Study._storage`)."""
    return study._storage


def trial_id(trial: optuna.Trial) -> int:
    """A trial's id in its storage (private: `Trial._trial_id`), which heartbeats are recorded under."""
    return int(trial._trial_id)


def heartbeats_enabled(storage: Any) -> bool:
    """Whether `storage` records heartbeats (private: `optuna.storages._heartbeat.is_heartbeat_enabled`)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return bool(is_heartbeat_enabled(storage))


def check_journal(path: Path, url: str) -> None:
    """ConfigError (exit 2) for a journal file Optuna could not replay: one that is not a journal (every
    line of Optuna's journal is a JSON object) or whose last line was cut short (a worker stopped while
    writing; a new worker would append after the torn line and damage the file for good)."""
    if not path.exists():
        return
    if not path.is_file():
        raise ConfigError(f"storage={url!r} is invalid: {str(path)!r} is not a file")
    data = path.read_bytes()
    if not data:
        return
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            ok = isinstance(json.loads(line), dict)
        except ValueError:
            ok = False
        if not ok:
            last = number == len(lines) or (number == len(lines) - 1 and not lines[-1])
            what = (
                "its last line is cut short (a worker stopped while writing)"
                if last and number > 1
                else (f"line {number} is not an Optuna journal entry")
            )
            raise ConfigError(
                f"storage={url!r} is invalid: {what}; restore the file, or remove that line to continue the study"
            )


def open_storage(url: str, heartbeat: int) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`: 'journal:PATH' (a journal file, e.g. on a shared file system) or a
    database URL (sqlite:///..., postgresql://..., mysql://...). Databases record a heartbeat per running
    trial every `heartbeat` seconds; a trial silent for twice that is failed and queued again."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:"))
        if not path.parent.is_dir():
            raise ConfigError(f"storage={url!r} is invalid: directory {str(path.parent)!r} does not exist")
        check_journal(path, url)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.split("?")[0] in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        raise ConfigError(
            f"storage={url!r} is invalid: an in-memory database ends with the process (and its trials with it); "
            "give a file, sqlite:///study.db"
        )
    if "://" not in url:
        raise ConfigError(
            f"storage={url!r} is invalid: must be a database URL (sqlite:///study.db, postgresql://user@host/db, "
            "mysql://...) or journal:PATH"
        )
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = 10
    elif url.startswith("sqlite"):
        connect_args["timeout"] = 60  # several local workers wait for the file lock instead of failing
    try:
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"connect_args": connect_args},
                    heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
                )
            except Exception as err:  # workers starting together race to create the schema: the loser retries
                if attempt == 4 or not any(m in str(err) for m in SCHEMA_RACE):
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")
    except ImportError as err:  # SQLAlchemy's driver for the URL's scheme is not installed
        cause = err.__cause__ if isinstance(err.__cause__, ImportError) else err
        raise ConfigError(
            f"storage={url!r} needs a database driver ({cause}): for PostgreSQL pip install 'a2c-jax[postgres]', "
            "for MySQL pip install pymysql and use mysql+pymysql://"
        ) from None
    except Exception as err:  # SQLAlchemy's ArgumentError (malformed) or OperationalError (unreachable)
        reason = " ".join(str(getattr(err, "orig", None) or err).split())
        kind = "unreachable" if type(err).__name__ == "OperationalError" else "invalid"
        raise ConfigError(f"storage={url!r} is {kind}: {reason[:300]}") from None


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """The names of the studies `storage` holds."""
    import optuna

    return [summary.study_name for summary in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]


def open_study(
    storage: optuna.storages.BaseStorage, name: str, sampler: optuna.samplers.BaseSampler, signature: dict[str, Any]
) -> optuna.Study:
    """Create the study `name` (maximising) or join it; ConfigError when an existing study of that name
    minimises, or was created with another search space or base settings (`signature`)."""
    import optuna

    study = optuna.create_study(
        storage=storage, sampler=sampler, study_name=name, direction="maximize", load_if_exists=True
    )
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study_name={name!r} exists and minimises: a sweep maximises the return, use another name")
    saved = study.user_attrs.get(STUDY_ATTR)
    if saved is not None:
        saved = {"objective": "iqm", **saved}  # studies of 0.1 maximised the IQM and did not record it
    if saved is None:
        study.set_user_attr(STUDY_ATTR, signature)
    elif saved != signature:
        diff = sorted(k for k in set(saved) | set(signature) if saved.get(k) != signature.get(k))
        raise ConfigError(
            f"study_name={name!r} exists with a different {', '.join(diff)}: join it with the same settings, "
            "or choose another --study-name"
        )
    return study


def ask_with_heartbeat(study: optuna.Study, beats: bool) -> optuna.Trial:
    """`study.ask()`, then at once a first heartbeat for the trial: Optuna only ever fails a running
    trial that has beaten, so one whose worker died before its first beat would stay running forever."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna: heartbeats are "supposed to be used with optimize"
        trial = study.ask()
    if beats:
        storage_of(study).record_heartbeat(trial_id(trial))
    return trial


@contextlib.contextmanager
def heartbeat(storage: Any, trial_ids: Sequence[int], interval: int) -> Iterator[None]:
    """Record a heartbeat for each trial every `interval` seconds while the block runs (databases only);
    compiled XLA programs release the GIL, so the beat goes on while a round trains."""
    if not heartbeats_enabled(storage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for tid in trial_ids:
                storage.record_heartbeat(tid)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True, name="a2c-jax-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
