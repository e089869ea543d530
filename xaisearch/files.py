"""Atomic file writes: a reader (or a crash) never sees half a file.

Every file xaisearch writes for users (exported configs, checkpoints, reports, heatmaps) goes
through here. The temporary file has a unique name beside the target, so two processes writing
the same file at once do not collide, and it is removed when the write fails or is interrupted.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xaisearch.errors import InputError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """An unused temporary path beside ``path`` for the block to write; on success it replaces
    ``path``, otherwise it is removed. The writer creates it, so it gets the user's usual mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield temporary
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def read_text(path: Path, fix: str) -> str:
    """A user's file as UTF-8 text; a file that is not, or cannot be read, is one ``InputError``
    line naming it (``fix`` says what the file should be)."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); {fix}"
        ) from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None
