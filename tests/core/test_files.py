"""Atomic writes: the old file or the whole new one, never a part, and no temporary left behind."""

from __future__ import annotations

import pytest

from xaisearch.files import atomic_path, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "config.json"
    write_text(target, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_two_writers_of_one_file_get_their_own_temporary_names(tmp_path):
    target = tmp_path / "report.html"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block ends last: its file wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_the_folder_is_made_and_the_writer_creates_the_file(tmp_path):
    target = tmp_path / "new" / "deeper" / "model.pt"
    with atomic_path(target) as temporary:
        assert not temporary.exists() and temporary.parent.is_dir()
        temporary.write_bytes(b"weights")
    assert target.read_bytes() == b"weights"
