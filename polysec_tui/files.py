"""Files at rest: written whole or not at all (a temp file in the same directory, fsync,
rename, fsync the directory: a reader never sees half a report or checkpoint), and
created owner-only from their first byte."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from polysec_tui.errors import InputError


class AlreadyExists(InputError):
    """`atomic_write` with ``overwrite=False`` found the file there."""


def atomic_write(path: Path | str, data: bytes, *, mode: int = 0o600, what: str = "file",
                 overwrite: bool = True) -> None:
    """``data`` into ``path`` whole or not at all. ``overwrite=False``: refuse (InputError)
    if ``path`` exists, also when it appears meanwhile (a hard link, not a rename)."""
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
        if overwrite:
            tmp.replace(target)
        else:
            os.link(tmp, target)
            tmp.unlink()
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise AlreadyExists(f"{what} {target} exists; it is never overwritten") from None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {what} {target}: {exc.strerror}") from None
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_umask_lock = threading.RLock()  # re-entrant: a nested block keeps 077


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and directories created inside are owner-only (umask 077) from the moment
    they exist, including those a library or a subprocess creates (SQLite's database,
    journal and WAL files, pg_dump's output): a chmod afterwards would leave a window in
    which others could open them. The umask is process-wide, hence the lock."""
    with _umask_lock:
        old = os.umask(0o077)
        try:
            yield
        finally:
            os.umask(old)
