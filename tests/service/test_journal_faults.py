"""A damaged journal file: a torn last line is cut (and kept), anything else is refused by line number."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from xaisearch.cli import main
from xaisearch.errors import InputError
from xaisearch.service.storage import check_storage, open_storage
from xaisearch.service.studies import load_existing_study

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


def plain(path: Path) -> JournalStorage:
    """Optuna's own journal storage, without anything xaisearch adds."""
    return JournalStorage(JournalFileBackend(str(path)))


def journal_with_trials(path: Path, n_trials: int = 3) -> dict[int, float]:
    """A real study with ``n_trials`` completed trials and a long last line; their values by number."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=plain(path))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=n_trials)
    study.set_user_attr("note", "n" * 200)  # the line the tests tear
    return {t.number: t.value for t in study.trials if t.value is not None}


def completed(storage: optuna.storages.BaseStorage) -> dict[int, float]:
    study = optuna.load_study(study_name="s", storage=storage)
    return {
        t.number: t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
    }


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.torn-*"))


def test_a_torn_last_line_is_cut_kept_in_a_backup_and_the_study_goes_on(tmp_path, caplog):
    path = tmp_path / "optuna.journal"
    values = journal_with_trials(path)
    whole = path.read_bytes()
    torn = whole[:-40]  # a write cut short: the last line has lost its end and its newline
    path.write_bytes(torn)
    intact = torn[: torn.rindex(b"\n") + 1]

    with caplog.at_level(logging.WARNING, logger="xaisearch.storage"):
        storage = open_storage(str(path))
    assert completed(storage) == values and len(values) == 3
    assert path.read_bytes() == intact
    [backup] = backups(path)
    assert backup.read_bytes() == torn[len(intact) :] and len(backup.read_bytes()) > 0
    [record] = [r for r in caplog.records if r.name == "xaisearch.storage"]
    assert record.levelno == logging.WARNING and "\n" not in record.getMessage()
    assert str(backup) in record.getMessage() and str(path) in record.getMessage()

    study = optuna.load_study(study_name="s", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert len(completed(plain(path))) == 4  # plain Optuna reads the appended journal
    assert all("op_code" in json.loads(line) for line in path.read_bytes().splitlines())
    assert open_storage(str(path)) is not None and len(backups(path)) == 1  # nothing more to cut


def test_a_first_write_cut_short_leaves_an_empty_journal(tmp_path):
    path = tmp_path / "optuna.journal"
    path.write_bytes(b'{"op_code":0,"worker_id":"a-1","study_na')
    optuna.create_study(study_name="s", storage=open_storage(str(path)))
    assert [s.study_name for s in optuna.get_all_study_summaries(plain(path))] == ["s"]
    [backup] = backups(path)
    assert backup.read_bytes() == b'{"op_code":0,"worker_id":"a-1","study_na'


def test_a_line_torn_by_another_process_is_cut_before_the_next_append(tmp_path):
    """A worker whose write was cut short (full disk, crash) while others run: their next append
    must not land on its partial line."""
    path = tmp_path / "optuna.journal"
    journal_with_trials(path, n_trials=2)
    study = optuna.load_study(study_name="s", storage=open_storage(str(path)))
    intact = path.read_bytes()
    with path.open("ab") as other:
        other.write(b'{"op_code":5,"worker_id":"other-1","trial_id":9,"par')
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert len(completed(plain(path))) == 3
    assert path.read_bytes().startswith(intact)
    [backup] = backups(path)
    assert backup.read_bytes() == b'{"op_code":5,"worker_id":"other-1","trial_id":9,"par'


def test_check_storage_reads_a_torn_journal_without_changing_it(tmp_path):
    path = tmp_path / "optuna.journal"
    journal_with_trials(path)
    torn = path.read_bytes()[:-40]
    path.write_bytes(torn)
    check_storage(str(path))
    assert path.read_bytes() == torn and not backups(path)


def valid_lines(tmp_path: Path) -> list[bytes]:
    source = tmp_path / "source.journal"
    journal_with_trials(source, n_trials=1)
    return source.read_bytes().splitlines(keepends=True)


def garbage_in_the_middle(tmp_path: Path) -> tuple[bytes, int]:
    lines = valid_lines(tmp_path)
    return b"".join([*lines[:2], b"this is not json\n", *lines[2:]]), 3


def an_append_onto_a_torn_line(tmp_path: Path) -> tuple[bytes, int]:
    """What Optuna alone leaves behind: the next operation written onto a torn one."""
    lines = valid_lines(tmp_path)
    return b"".join([*lines[:-1], lines[-1][:30] + lines[-1]]), len(lines)


def foreign_json_lines(tmp_path: Path) -> tuple[bytes, int]:
    return b'{"event": "login", "user": 1}\n{"event": "logout", "user": 1}\n', 1


def foreign_json_after_a_journal(tmp_path: Path) -> tuple[bytes, int]:
    lines = valid_lines(tmp_path)
    return b"".join([*lines, b'{"level": "info", "msg": "hello"}\n']), len(lines) + 1


def a_png(tmp_path: Path) -> tuple[bytes, int]:
    return PNG, 1


def text(tmp_path: Path) -> tuple[bytes, int]:
    return b"first line of notes\nsecond line\n", 1


def text_without_a_newline(tmp_path: Path) -> tuple[bytes, int]:
    return b"just some words", 1


@pytest.mark.parametrize(
    "damage",
    [
        garbage_in_the_middle,
        an_append_onto_a_torn_line,
        foreign_json_lines,
        foreign_json_after_a_journal,
        a_png,
        text,
        text_without_a_newline,
    ],
)
def test_a_file_that_is_not_a_sound_journal_is_refused_by_line_and_left_alone(tmp_path, damage, capsys):
    content, line = damage(tmp_path)
    path = tmp_path / "optuna.journal"
    path.write_bytes(content)
    for opening in (
        lambda: open_storage(str(path)),
        lambda: load_existing_study("s", str(path)),
        lambda: check_storage(str(path)),
    ):
        with pytest.raises(InputError) as error:
            opening()
        message = str(error.value)
        assert "\n" not in message and str(path) in message and f"line {line} " in message
        assert path.read_bytes() == content and not backups(path)
    assert main(["status", "--study", "s", "--storage", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and f"line {line} " in err
    assert path.read_bytes() == content
