"""Storage URLs → Optuna storages, with the house rules for each backend.

* a path (no ``://``): an Optuna journal file — the embedded default, safe for many processes on
  one machine, no heartbeats (``xaisearch run --workers K`` watches its workers instead);
* ``postgresql+psycopg2://user@host/db`` (or ``postgresql+psycopg://`` for psycopg 3): the
  coordinator for many machines; small pools with pre-ping; heartbeats and stale-trial retry
  when a worker asks for them. A bare ``postgresql://`` means psycopg 3 under SQLAlchemy 2.1: it
  is accepted when psycopg 3 is installed, refused with the fix otherwise;
* ``sqlite:///file.db``: one process only (several lose and double-run trials).

Passwords come from the URL or ``PGPASSWORD`` and are masked in every message. Paths are checked
before anything is written (a folder, a path under a file, a read-only folder, ``''``), and
``check_storage`` runs every check without creating or changing anything, so a command can refuse
a storage before it trains a model. A journal whose last line was torn (a write cut short by a
crash or a full disk) is repaired under the journal's lock: Optuna ignores such a line when it
reads, but its next append would land on it and make the whole file unreadable.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xaisearch.errors import InputError
from xaisearch.files import write_bytes

if TYPE_CHECKING:
    import optuna
    from optuna.storages.journal import JournalFileSymlinkLock

log = logging.getLogger("xaisearch.storage")

_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]+)(@)")
CONNECT_TIMEOUT_SECONDS = 10
CHECK_TIMEOUT_SECONDS = 5  # check_storage fails fast; libpq's minimum is 2 s
ACCEPTED = "use a journal file path, sqlite:///FILE or postgresql+psycopg2://USER@HOST/DB"
# every operation Optuna writes starts so (JournalStorage._write_log; older versions put a space after ':')
_OPERATION_START = re.compile(rb'\{\s*"op_code"\s*:')


def mask_password(text: str) -> str:
    """``postgresql+psycopg2://user:secret@host/db`` → ``postgresql+psycopg2://user:***@host/db``."""
    return _PASSWORD.sub(r"\1***\3", text)


@dataclass(frozen=True)
class Heartbeat:
    """Heartbeat settings for RDB storages (seconds); retried stale trials keep their params."""

    interval: int = 60
    grace_period: int = 180
    max_retry: int = 3

    def __post_init__(self) -> None:
        # a grace period under two intervals fails live trials whose heartbeat was merely late
        if self.interval < 1 or self.grace_period < 2 * self.interval:
            raise InputError(
                f"--grace-period {self.grace_period}: must be at least twice --heartbeat-interval ({self.interval}), "
                "which must be at least 1 s"
            )


def storage_kind(url: str) -> str:
    """``journal``, ``sqlite`` or ``postgresql``."""
    if not url.strip():
        raise InputError(f"storage {url!r}: empty; {ACCEPTED}")
    if "://" not in url:
        return "journal"
    scheme = url.split("://", 1)[0]
    if scheme.startswith("sqlite"):
        return "sqlite"
    if scheme.startswith("postgresql"):
        return "postgresql"
    raise InputError(f"storage {mask_password(url)}: unsupported URL; {ACCEPTED}")


def _check_driver(url: str) -> None:
    scheme = url.split("://", 1)[0]
    wants_psycopg3 = scheme in ("postgresql", "postgresql+psycopg")
    if wants_psycopg3 and importlib.util.find_spec("psycopg") is None:
        fixed = "postgresql+psycopg2://" + url.split("://", 1)[1]
        raise InputError(
            f"storage {mask_password(url)}: '{scheme}://' needs psycopg 3 (pip install 'psycopg[binary]'), "
            f"which is not installed; use {mask_password(fixed)} for psycopg2"
        )


def _connection_problem(url: str, error: BaseException) -> InputError:
    """One line that says what went wrong with the database, never the password."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    reason = next((line.strip() for line in text if line.strip()), type(error).__name__)
    reason = re.sub(r"^\(.*?\)\s*", "", reason)
    return InputError(f"storage {mask_password(url)}: cannot connect: {mask_password(reason)}")


def _sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite://`` URL; None for an in-memory database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(url).database
    except ArgumentError:
        raise InputError(f"storage {url}: not a valid URL; {ACCEPTED}") from None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _check_path(url: str, path: Path, must_exist: bool) -> None:
    """Refuse a storage file that cannot work, before anything is written; creates nothing.

    Its folder may be missing (it is created on first use), but the nearest folder that exists
    must be writable: the storage and, for a journal, its ``.lock`` file are written there."""
    shown = f"storage {url}"
    try:
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if path.is_dir() or url.endswith(("/", os.sep)):
            raise InputError(f"{shown}: is a folder; give a file path, e.g. {path / 'optuna.journal'}")
        if not folder.is_dir():
            raise InputError(f"{shown}: {folder} is a file, not a folder; put the storage in a folder")
        if not path.exists():
            if must_exist:
                raise InputError(
                    f"{shown}: does not exist; create the study first with `xaisearch run STUDY.yaml --storage "
                    f"{url}` or `xaisearch create STUDY.yaml --storage {url}`"
                )
        elif not path.is_file():
            raise InputError(f"{shown}: is not a regular file; give a journal file path")
        elif not os.access(path, os.R_OK | os.W_OK):
            raise InputError(f"{shown}: the file is not readable and writable; fix its permissions or copy it")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(
                f"{shown}: folder {folder} is not writable (the storage and its lock file go there); "
                "choose another path or make the folder writable"
            )
    except OSError as error:  # e.g. a folder on the way that we may not enter
        raise InputError(f"{shown}: cannot use the path: {error.strerror} ({error.filename})") from None


def _complete_length(path: Path, url: str) -> tuple[int, int]:
    """(bytes up to the last complete line, bytes read) of a journal; a line that is not an Optuna
    operation is an ``InputError`` naming it. A last line without its newline is a torn write,
    which Optuna ignores when it reads: it is left for ``_mend_torn_tail`` to cut."""
    not_a_journal = "point --storage at a study's journal file, or restore this one from a backup"
    complete = 0
    with path.open("rb") as journal:
        for number, line in enumerate(journal, start=1):
            if not line.endswith(b"\n"):
                # no complete operation before it: cut only what could be the start of one
                if complete == 0 and not (_OPERATION_START.match(line) or b'{"op_code":'.startswith(line)):
                    raise InputError(f"storage {url}: line 1 is not an Optuna journal operation; {not_a_journal}")
                return complete, complete + len(line)
            try:
                operation = json.loads(line)
            except ValueError:
                raise InputError(f"storage {url}: line {number} is not JSON; {not_a_journal}") from None
            if not isinstance(operation, dict) or "op_code" not in operation:
                raise InputError(
                    f"storage {url}: line {number} is JSON but not an Optuna journal operation (no op_code); "
                    + not_a_journal
                )
            complete += len(line)
    return complete, complete


def _mend_torn_tail(path: Path, url: str) -> None:
    """Cut a torn last line, its bytes kept in ``<journal>.torn-<time>``; call with the lock held."""
    with path.open("rb") as journal:
        size = journal.seek(0, os.SEEK_END)
        if size == 0:
            return
        journal.seek(size - 1)
        if journal.read(1) == b"\n":
            return
        complete, _ = _complete_length(path, url)
        journal.seek(complete)
        torn = journal.read()
    backup = path.with_name(f"{path.name}.torn-{datetime.now().strftime('%Y%m%dT%H%M%S%f')}")
    write_bytes(backup, torn)
    os.truncate(path, complete)
    log.warning(
        "storage %s: cut a torn last line (%d bytes after byte %d, an operation never completely written); "
        "the bytes are in %s",
        url,
        len(torn),
        complete,
        backup,
    )


def _journal_lock(path: Path, url: str) -> JournalFileSymlinkLock:
    """Optuna's journal lock that, once held, first cuts a torn last line: a worker whose write was
    cut short (full disk, crash) must not make the others append onto it."""
    from optuna.storages.journal import JournalFileSymlinkLock

    class MendingLock(JournalFileSymlinkLock):
        def acquire(self) -> bool:
            super().acquire()
            try:
                _mend_torn_tail(path, url)
            except BaseException:
                self.release()
                raise
            return True

    return MendingLock(str(path))


def _open_journal(url: str, create: bool) -> optuna.storages.BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(url)
    _check_path(url, path, must_exist=not create)
    lock = _journal_lock(path, url)
    if path.exists():
        complete, size = _complete_length(path, url)
        if complete < size:  # torn, or a write in flight: the lock tells them apart
            lock.acquire()
            lock.release()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock))


def open_storage(
    url: str, heartbeat: Heartbeat | None = None, application_name: str = "xaisearch", create: bool = True
) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; connection and driver problems become one-line ``InputError``s.

    ``create=False`` opens an existing storage only: a journal or SQLite file that is not there is
    an ``InputError`` instead of a new empty file."""
    import optuna

    kind = storage_kind(url)
    if kind == "journal":
        return _open_journal(url, create)
    kwargs: dict[str, Any] = {}
    if heartbeat is not None:
        kwargs = {
            "heartbeat_interval": heartbeat.interval,
            "grace_period": heartbeat.grace_period,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=heartbeat.max_retry
            ),
        }
    engine: dict[str, Any] = {}
    if kind == "sqlite":
        database = _sqlite_file(url)
        if database is not None:
            _check_path(url, database, must_exist=not create)
            database.parent.mkdir(parents=True, exist_ok=True)
    if kind == "postgresql":
        _check_driver(url)
        engine = {
            "pool_size": 2,
            "max_overflow": 2,
            "pool_pre_ping": True,
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": application_name},
        }
    import sqlalchemy.exc

    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError) as error:
        raise _connection_problem(url, error) from None


def check_storage(url: str) -> None:
    """Refuse a storage that cannot work before expensive work (training a model) starts; creates
    and changes nothing. Paths get ``open_storage``'s checks (and a journal's lines are read);
    PostgreSQL is connected to, with a short timeout, so a wrong host or password fails now."""
    kind = storage_kind(url)
    if kind == "journal":
        path = Path(url)
        _check_path(url, path, must_exist=False)
        if path.exists():
            _complete_length(path, url)
        return
    if kind == "sqlite":
        database = _sqlite_file(url)
        if database is not None:
            _check_path(url, database, must_exist=False)
        return
    _check_driver(url)
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    connect_args = {"connect_timeout": CHECK_TIMEOUT_SECONDS, "application_name": "xaisearch-check"}
    try:
        engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_args)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError) as error:
        raise _connection_problem(url, error) from None


def refuse_concurrent_sqlite(url: str, workers: int) -> None:
    if workers > 1 and storage_kind(url) == "sqlite":
        raise InputError(
            f"--workers {workers}: SQLite storage ({mask_password(url)}) loses and double-runs trials with "
            "several processes; use the default journal file or postgresql+psycopg2://"
        )
