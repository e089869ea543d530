"""Storage paths and URLs that cannot work are refused in one line before anything is written;
reading a study never creates its storage; ``check_storage`` creates and changes nothing."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests.service.conftest import cli
from tests.unprivileged import as_ordinary_user
from xaisearch.cli import main
from xaisearch.errors import InputError
from xaisearch.service.dashboard import serve
from xaisearch.service.storage import check_storage, open_storage
from xaisearch.service.studies import load_existing_study


def everything_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def writes(folder: Path) -> bool:
    """Whether this process can create a file in ``folder`` (root ignores a folder's mode)."""
    probe = folder / f".probe-{uuid.uuid4().hex}"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


@pytest.fixture
def read_only_folder(tmp_path) -> Iterator[Path]:
    """A folder this process genuinely cannot write (mode 0o555; as root, the test runs as an
    ordinary user: ``tests.unprivileged``), holding a journal."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    optuna.create_study(study_name="s", storage=open_storage(str(folder / "existing.journal")))
    (folder / "existing.journal").chmod(0o666)  # the journal is writable: only its folder is not
    folder.chmod(0o555)
    try:
        with as_ordinary_user(tmp_path):
            assert not writes(folder)
            yield folder
    finally:
        folder.chmod(0o700)


def one_line(error: pytest.ExceptionInfo[InputError]) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def cannot_work(case: str, tmp_path: Path, read_only: Path | None) -> tuple[str, str]:
    """(storage, what the message must say) for each way a storage path can be wrong."""
    if case == "a folder":
        (tmp_path / "runs").mkdir()
        return str(tmp_path / "runs"), "is a folder"
    if case == "a folder, by its trailing slash":
        return str(tmp_path / "new") + "/", "is a folder"
    if case in ("under a file", "two levels under a file", "sqlite under a file"):
        (tmp_path / "somefile").write_text("notes\n")
        inside = {"under a file": "optuna.journal", "two levels under a file": "sub/optuna.journal"}
        if case == "sqlite under a file":
            return f"sqlite:///{tmp_path}/somefile/s.db", f"{tmp_path / 'somefile'} is a file, not a folder"
        return str(tmp_path / "somefile" / inside[case]), f"{tmp_path / 'somefile'} is a file, not a folder"
    if case == "in a read-only folder":
        assert read_only is not None
        return str(read_only / "optuna.journal"), f"folder {read_only} is not writable"
    if case == "an existing journal in a read-only folder":  # its lock file could not be made
        assert read_only is not None and (read_only / "existing.journal").exists()
        return str(read_only / "existing.journal"), f"folder {read_only} is not writable"
    assert case == "empty"
    return "", "storage '': empty"


CASES = [
    "a folder",
    "a folder, by its trailing slash",
    "under a file",
    "two levels under a file",
    "sqlite under a file",
    "in a read-only folder",
    "an existing journal in a read-only folder",
    "empty",
]


@pytest.mark.parametrize("case", CASES)
def test_a_storage_path_that_cannot_work_is_one_line_before_anything_is_written(case, tmp_path, request, capsys):
    read_only = request.getfixturevalue("read_only_folder") if "read-only" in case else None
    storage, says = cannot_work(case, tmp_path, read_only)
    # reading a study that is not there says so first, wherever it would have been
    reading_says = "does not exist" if case == "in a read-only folder" else says
    before = everything_under(tmp_path)
    for opening, expected in (
        (lambda: open_storage(storage), says),
        (lambda: load_existing_study("s", storage), reading_says),
        (lambda: check_storage(storage), says),
    ):
        with pytest.raises(InputError) as error:
            opening()
        message = one_line(error)
        assert expected in message and (storage in message or storage == "")
    assert main(["status", "--study", "s", "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reading_says in err
    assert everything_under(tmp_path) == before
    assert read_only is None or not (read_only / "optuna.journal").exists()


def test_status_export_and_dashboard_never_create_a_missing_journal(tmp_path, capsys):
    missing = tmp_path / "runs" / "typo" / "optuna.journal"
    with pytest.raises(InputError) as error:
        load_existing_study("s", str(missing))
    message = one_line(error)
    assert f"storage {missing}: does not exist" in message
    assert "xaisearch run STUDY.yaml" in message and "xaisearch create STUDY.yaml" in message
    with socket.socket() as taken:  # were the storage opened, the server would fail on this port, not hang
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(InputError, match="does not exist"):
            serve(str(missing), None, port=taken.getsockname()[1])
    for command in (["status", "--study", "s"], ["export", "--study", "s", "-o", str(tmp_path / "best.json")]):
        assert main([*command, "--storage", str(missing)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "does not exist" in err
    done = cli("dashboard", "--storage", str(missing), "--port", "1", timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "does not exist" in done.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "best.json").exists()

    here = tmp_path / "here"
    here.mkdir()
    assert main(["status", "--study", "s", "--storage", str(here / "optuna.journal")]) == 2
    assert list(here.iterdir()) == []


def test_reading_a_missing_sqlite_file_creates_nothing(tmp_path):
    with pytest.raises(InputError) as error:
        load_existing_study("s", f"sqlite:///{tmp_path}/none.db")
    assert "does not exist" in one_line(error) and not (tmp_path / "none.db").exists()


def test_creating_a_study_still_creates_its_journal_and_folders(tmp_path):
    path = tmp_path / "runs" / "new" / "optuna.journal"
    optuna.create_study(study_name="s", storage=open_storage(str(path)))
    assert path.is_file() and load_existing_study("s", str(path)).study_name == "s"
    database = tmp_path / "db" / "s.db"
    optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{database}"))
    assert load_existing_study("s", f"sqlite:///{database}").study_name == "s"


def test_check_storage_accepts_new_paths_and_creates_nothing(tmp_path):
    for storage in (str(tmp_path / "a" / "b" / "optuna.journal"), f"sqlite:///{tmp_path}/c/s.db", "sqlite://"):
        check_storage(storage)
    assert everything_under(tmp_path) == set()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://x",
        "mysql+pymysql://user:hunter2@db/study",
        "redis://localhost:6379",
        "file://storage-host/optuna.journal",
    ],
)
def test_check_storage_refuses_an_unknown_scheme_naming_the_accepted_forms(url):
    with pytest.raises(InputError) as error:
        check_storage(url)
    message = one_line(error)
    assert "unsupported URL" in message and url.replace("hunter2", "***") in message and "hunter2" not in message
    assert "journal file path" in message and "sqlite:///FILE" in message and "postgresql+psycopg2://" in message


def test_check_storage_on_an_unreachable_postgresql_fails_fast_in_one_line():
    started = time.monotonic()
    with pytest.raises(InputError) as error:
        check_storage("postgresql+psycopg2://user:pw-secret@127.0.0.1:1/db")
    message = one_line(error)
    assert time.monotonic() - started < 8
    assert "cannot connect" in message and "127.0.0.1" in message and "pw-secret" not in message


def test_check_storage_connects_to_postgresql_and_names_a_wrong_password(postgres, pg_url):
    check_storage(pg_url)  # the password comes from PGPASSWORD
    wrong = pg_url.replace("xaisearch@", "xaisearch:hunter2-secret@")
    with pytest.raises(InputError) as error:
        check_storage(wrong)
    message = one_line(error)
    assert "password authentication failed" in message
    assert "hunter2" not in message and postgres.password not in message
    assert os.environ["PGPASSWORD"] == postgres.password
