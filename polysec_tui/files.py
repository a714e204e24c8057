"""Files at rest: written whole or not at all (a temp file in the same directory, fsync,
rename, fsync the directory: a reader never sees half a report or checkpoint), and
created owner-only from their first byte."""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

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


class NewFile:
    """A new file written as a stream (a backup, a restored database) and committed
    whole: it is written under a temporary name beside its path, owner-only from the
    first byte; `commit` fsyncs it, links it into place (never over a file that is there)
    and fsyncs the directory; `abort`, or an error inside a ``with`` block, removes it.
    Every failure is one line (InputError). For small files: `atomic_write`."""

    def __init__(self, path: Path, *, temp: Path | None = None, what: str = "file") -> None:
        self.path = path
        self.temp = temp or path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        self.what = what
        try:
            with private_umask():
                fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise InputError(f"cannot write {what} in {path.parent}: {exc.strerror}") from None
        self.file = os.fdopen(fd, "wb")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            raise InputError(f"cannot write {self.temp}: {exc.strerror}") from None

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.link(self.temp, self.path)  # fails if the path appeared meanwhile
        except FileExistsError:
            self.abort()
            raise AlreadyExists(f"{self.path} appeared meanwhile; nothing replaced") from None
        except OSError as exc:
            self.abort()
            raise InputError(f"cannot commit {self.what} {self.path}: {exc.strerror}") from None
        self.temp.unlink()
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.temp.unlink(missing_ok=True)

    def __enter__(self) -> NewFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is not None:
            self.abort()
