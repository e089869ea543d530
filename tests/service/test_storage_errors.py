"""Bad storage input: one line, exit code 2, never the password."""

from tests.service.conftest import cli


def test_wrong_password_is_one_line_without_the_password(postgres, pg_url):
    wrong = pg_url.replace("xaisearch@", "xaisearch:hunter2-secret@")
    done = cli("status", "--study", "x", "--storage", wrong, env={"PGPASSWORD": ""})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "password authentication failed" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout and postgres.password not in done.stderr


def test_unreachable_host_is_one_line(tmp_path):
    done = cli("status", "--study", "x", "--storage", "postgresql+psycopg2://nobody:pw-secret@127.0.0.1:1/db")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot connect" in done.stderr and "pw-secret" not in done.stderr


def test_unknown_study_is_one_line(pg_url):
    done = cli("status", "--study", "no-such-study", "--storage", pg_url)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "study 'no-such-study' not found" in done.stderr


def test_bare_postgresql_url_without_psycopg3_names_the_fix(pg_url):
    import importlib.util

    bare = pg_url.replace("postgresql+psycopg2://", "postgresql://")
    done = cli("status", "--study", "x", "--storage", bare)
    if importlib.util.find_spec("psycopg") is None:
        assert done.returncode == 2 and "postgresql+psycopg2://" in done.stderr and "psycopg 3" in done.stderr
    else:
        assert "psycopg" not in done.stderr or done.returncode == 2


def test_sqlite_with_several_workers_is_refused(tmp_path):
    import yaml

    from tests.search.conftest import TINY_STUDY

    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump(TINY_STUDY))
    done = cli("run", str(study), "--storage", f"sqlite:///{tmp_path}/s.db", "--workers", "2", "--out", str(tmp_path))
    assert done.returncode == 2 and "SQLite" in done.stderr and done.stderr.count("\n") == 1
