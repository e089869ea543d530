"""Run a block as an ordinary user when the tests run as root, so file modes mean what they mean.

Root ignores a folder's mode, so "a read-only folder refuses files" cannot be seen as root. For
the block, root takes the real and effective user and group ids of ``nobody`` (keeping 0 as its saved ids,
which lets it come back) and opens the folders the block needs to that user; everything is put
back afterwards. As any other user the block runs unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = NOGROUP = 65534


@contextmanager
def as_ordinary_user(workspace: Path) -> Iterator[None]:
    """The block as ``nobody`` when root: ``workspace`` and its files become writable to it and its
    ancestors traversable; a folder of mode 0o555 inside then refuses files as it does for users."""
    if os.geteuid() != 0:
        yield
        return
    opened: list[tuple[Path, int]] = []

    def widen(path: Path, bits: int) -> None:
        mode = path.stat().st_mode & 0o7777
        if mode | bits != mode:
            opened.append((path, mode))
            path.chmod(mode | bits)

    for ancestor in workspace.parents:
        widen(ancestor, 0o005)
    widen(workspace, 0o007)
    for child in workspace.iterdir():
        if child.is_file():
            widen(child, 0o006)
    groups = os.getgroups()
    os.setgroups([])
    os.setresgid(NOGROUP, NOGROUP, 0)
    os.setresuid(NOBODY, NOBODY, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)
        os.setgroups(groups)
        for path, mode in reversed(opened):
            path.chmod(mode)
