"""Private temporary directories that a killed process does not leave behind for long.

A SQLite snapshot (the online-backup copy that `create` streams into the envelope) and
the scratch database of `verify --restore-test` are plain database files (encrypted
columns aside). They live in a directory of the system's temporary directory
(``TMPDIR``) that is owner-only from birth (made under `files.private_umask`), and is
deleted when the operation ends. A process killed with SIGKILL runs no cleanup, so:

- the directory is made as ``.polysec-<kind>-init-XXXXXXXX``; a file ``lock`` inside is
  created and locked (``flock(LOCK_EX)``), and only then is the directory renamed to
  ``polysec-<kind>-XXXXXXXX``. A directory with the final name therefore always has its
  lock held for as long as its process lives: the kernel drops the lock when the process
  dies, however it dies.
- `remove_stale` (run by the next `create`, or the next restore test) deletes each
  ``polysec-<kind>-*`` directory of this user whose lock it can take: its process is
  gone. A directory whose lock is held belongs to a live process (a concurrent
  `create`) and is left alone; there is no race and no guess from process ids (which
  are reused and differ between PID namespaces). An ``init`` directory is deleted once it
  is an hour old (a process only stays there for the few microseconds before the
  rename; such a directory holds no data).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from polysec_tui.files import private_umask

LOCK = "lock"
INIT_GRACE_SECONDS = 3600


def _prefixes(kind: str) -> tuple[str, str]:
    return f"polysec-{kind}-", f".polysec-{kind}-init-"


@contextmanager
def private_tempdir(kind: str, base: Path | None = None) -> Iterator[Path]:
    """A fresh owner-only directory ``<tmp>/polysec-<kind>-XXXXXXXX``, locked for the
    life of this process and removed on exit. Create files in it under
    `files.private_umask` when they must be 0600 themselves."""
    final_prefix, init_prefix = _prefixes(kind)
    where = base or Path(tempfile.gettempdir())
    with private_umask():
        init = Path(tempfile.mkdtemp(prefix=init_prefix, dir=where))
        try:
            fd = os.open(init / LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o600)
        except BaseException:
            shutil.rmtree(init, ignore_errors=True)
            raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        final = where / (final_prefix + init.name[len(init_prefix):])
        init.rename(final)
    except BaseException:
        shutil.rmtree(init, ignore_errors=True)
        os.close(fd)
        raise
    try:
        yield final
    finally:
        shutil.rmtree(final, ignore_errors=True)
        os.close(fd)  # the lock goes with the descriptor, after the files


def remove_stale(kind: str, base: Path | None = None) -> list[Path]:
    """Delete the directories of ``kind`` that killed processes of this user left;
    returns them."""
    final_prefix, init_prefix = _prefixes(kind)
    where = base or Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(where))
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        is_final = entry.name.startswith(final_prefix)
        if not (is_final or entry.name.startswith(init_prefix)):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
            continue  # never follow a link, never touch another user's directory
        path = Path(entry.path)
        if not is_final:
            if time.time() - st.st_mtime > INIT_GRACE_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            continue
        try:
            fd = os.open(path / LOCK, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # no lock file: not ours to judge
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive
            shutil.rmtree(path, ignore_errors=True)  # still holding the lock
            removed.append(path)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
    return removed
