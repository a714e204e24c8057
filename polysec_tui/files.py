"""Writing a file whole or not at all: a temp file in the same directory, fsync, rename,
fsync the directory. A reader never sees half a report or checkpoint."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from polysec_tui.errors import InputError


def atomic_write(path: Path | str, data: bytes, *, mode: int = 0o600, what: str = "file") -> None:
    target = Path(path)
    directory = target.parent if str(target.parent) else Path()
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write {what} {target}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {what} {target}: {exc.strerror}") from None
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
