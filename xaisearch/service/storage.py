"""Storage URLs → Optuna storages, with the house rules for each backend.

* a path (no ``://``): an Optuna journal file — the embedded default, safe for many processes on
  one machine, no heartbeats (``xaisearch run --workers K`` watches its workers instead);
* ``postgresql+psycopg2://user@host/db`` (or ``postgresql+psycopg://`` for psycopg 3): the
  coordinator for many machines; small pools with pre-ping; heartbeats and stale-trial retry
  when a worker asks for them. A bare ``postgresql://`` means psycopg 3 under SQLAlchemy 2.1: it
  is accepted when psycopg 3 is installed, refused with the fix otherwise;
* ``sqlite:///file.db``: one process only (several lose and double-run trials).

Passwords come from the URL or ``PGPASSWORD`` and are masked in every message.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xaisearch.errors import InputError

if TYPE_CHECKING:
    import optuna

_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]+)(@)")
CONNECT_TIMEOUT_SECONDS = 10


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
    if "://" not in url:
        return "journal"
    scheme = url.split("://", 1)[0]
    if scheme.startswith("sqlite"):
        return "sqlite"
    if scheme.startswith("postgresql"):
        return "postgresql"
    raise InputError(
        f"storage {mask_password(url)}: unsupported URL; use a journal file path, sqlite:///FILE "
        "or postgresql+psycopg2://USER@HOST/DB"
    )


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


def open_storage(
    url: str, heartbeat: Heartbeat | None = None, application_name: str = "xaisearch"
) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; connection and driver problems become one-line ``InputError``s."""
    import optuna

    kind = storage_kind(url)
    if kind == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
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


def refuse_concurrent_sqlite(url: str, workers: int) -> None:
    if workers > 1 and storage_kind(url) == "sqlite":
        raise InputError(
            f"--workers {workers}: SQLite storage ({mask_password(url)}) loses and double-runs trials with "
            "several processes; use the default journal file or postgresql+psycopg2://"
        )
