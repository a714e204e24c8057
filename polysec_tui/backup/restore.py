"""Loading a decrypted snapshot into a new database, checking a restored database, and
swapping a restored database in for the live one.

A loader never overwrites anything: the target must not exist (or be an empty database
on a server). On any failure the loader removes what it created. Callers authenticate
the whole backup before they create a loader (`services.backups`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from polysec_tui.backup.snapshot import (
    SnapshotError,
    SnapshotInfo,
    Tool,
    _first_line,
    describe,
    engine_kind,
    maria_tool,
    pg_tool,
)
from polysec_tui.crypto.fields import DecryptionError, FieldCipher
from polysec_tui.db.engine import make_engine, parse_url, redact
from polysec_tui.db.models import ENCRYPTED_COLUMNS, Base
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.files import NewFile, fsync_dir, private_umask

SAMPLE_ROWS = 25


def _admin_engine(url: URL) -> Engine:
    """A connection to the server without the target database (AUTOCOMMIT)."""
    kind = engine_kind(url)
    # URL.set() ignores None: _replace clears the database.
    admin = url.set(database="postgres") if kind == "postgresql" else url._replace(database=None)
    return make_engine(admin.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")


def _quote(engine: Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote_identifier(name)


def database_exists(url: URL) -> bool:
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            if engine_kind(url) == "postgresql":
                sql = text("SELECT 1 FROM pg_database WHERE datname = :n")
            else:
                sql = text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n")
            return conn.scalar(sql, {"n": url.database}) is not None
    finally:
        admin.dispose()


def drop_database(url: URL) -> None:
    kind = engine_kind(url)
    if kind == "sqlite":
        if url.database:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(url.database + suffix).unlink(missing_ok=True)
        return
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            name = _quote(admin, str(url.database))
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
    finally:
        admin.dispose()


class Loader:
    """Receives the decrypted snapshot with `write`; `close` finishes, `abort` undoes."""

    created = False

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


def check_sqlite_target(path: Path) -> None:
    """Refuse, before anything is read or written, a SQLite target that exists (and is
    not empty) or whose directory cannot hold it."""
    try:
        if path.is_dir():
            raise InputError(f"{path} is a directory; restore needs a new SQLite file path")
        if path.exists() and path.stat().st_size > 0:
            raise InputError(f"{path} exists; restore into a new file")
    except OSError as exc:
        raise InputError(f"cannot restore to {path}: {exc.strerror}") from None
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot restore to {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot restore to {path}: {ancestor} is not writable")


class SqliteLoader(Loader):
    def __init__(self, path: Path) -> None:
        self.path = path
        check_sqlite_target(path)
        try:
            with private_umask():  # the directory and the file: owner-only from birth
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot restore to {path}: {exc.strerror}") from None
        self.out = NewFile(path, temp=path.with_name(
            f".{path.name}.restoring-{secrets.token_hex(4)}"), what="the restored database")

    def write(self, data: bytes) -> None:
        self.out.write(data)

    def close(self) -> None:
        if self.path.exists() and self.path.stat().st_size == 0:
            self.path.unlink()  # an empty file is a placeholder, not a database
        self.out.commit()
        self.created = True

    def abort(self) -> None:
        self.out.abort()


class ToolLoader(Loader):
    """A restore tool reading the snapshot on stdin, into a database we created."""

    def __init__(self, url: URL, tool: Tool) -> None:
        self.url = url
        self.errors: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close/abort
        self.proc = subprocess.Popen(tool.argv, stdin=subprocess.PIPE,  # noqa: S603
                                     stdout=subprocess.DEVNULL, stderr=self.errors,
                                     env=tool.env)
        self.name = Path(tool.argv[0]).name

    def _failure(self, code: int) -> SnapshotError:
        self.errors.seek(0)
        return SnapshotError(f"{self.name} failed (exit {code}): "
                             f"{_first_line(self.errors.read(4096))}")

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError:
            raise self._failure(self.proc.wait()) from None

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        code = self.proc.wait()
        if code != 0:
            raise self._failure(code)
        self.errors.close()

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        if not self.errors.closed:
            self.errors.close()
        drop_database(self.url)


def _server_error(url: URL, exc: DBAPIError) -> InputError:
    reason = _first_line(str(exc.orig or exc).encode())
    return InputError(f"cannot restore into {redact(url)}: {reason}")


def check_server_target(url: URL) -> bool:
    """Refuse a server target that names no database, cannot be reached or exists with
    tables in it. True when the (empty) database already exists."""
    if not url.database:
        raise InputError(f"{redact(url)} names no database to restore into")
    try:
        if not database_exists(url):
            return False
        engine = make_engine(url.render_as_string(hide_password=False))
        try:
            tables = inspect(engine).get_table_names()
        finally:
            engine.dispose()
    except DBAPIError as exc:
        raise _server_error(url, exc) from None
    if tables:
        raise InputError(f"database {redact(url)} exists and is not empty; restore into a "
                         "new database")
    return True


def check_target(raw_url: str | URL) -> None:
    """The checks a loader makes first, for a caller that wants them before the long
    authentication pass (nothing is created)."""
    url = parse_url(raw_url) if isinstance(raw_url, str) else raw_url
    if engine_kind(url) == "sqlite":
        if not url.database or url.database == ":memory:":
            raise InputError("restore needs a SQLite file path")
        check_sqlite_target(Path(url.database).expanduser())
    else:
        check_server_target(url)


def _create_database(url: URL) -> None:
    kind = engine_kind(url)
    assert url.database
    if check_server_target(url):
        drop_database(url)
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            extra = " CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci" if kind == "mariadb" else ""
            conn.execute(text(f"CREATE DATABASE {_quote(admin, url.database)}{extra}"))
    except DBAPIError as exc:
        raise _server_error(url, exc) from None
    finally:
        admin.dispose()


def open_loader(raw_url: str | URL) -> Loader:
    """A loader for a new database named by the URL (created here)."""
    url = parse_url(raw_url) if isinstance(raw_url, str) else raw_url
    kind = engine_kind(url)
    if kind == "sqlite":
        if not url.database or url.database == ":memory:":
            raise InputError("restore needs a SQLite file path")
        return SqliteLoader(Path(url.database).expanduser())
    _create_database(url)
    try:
        if kind == "postgresql":
            tool = pg_tool("pg_restore", url, "--no-owner", "--no-privileges",
                           "--exit-on-error", "--single-transaction")
        else:
            tool = maria_tool("mariadb", url, "--default-character-set=utf8mb4",
                              "--binary-mode", f"--database={url.database}")
        return ToolLoader(url, tool)
    except BaseException:
        drop_database(url)
        raise


# ----------------------------------------------------------------------------- checks


@dataclass
class RestoreCheck:
    revision: str | None
    row_counts: dict[str, int]
    sampled: int
    problems: list[str]


def check_restored(raw_url: str | URL, manifest: dict[str, Any],
                   cipher: FieldCipher) -> RestoreCheck:
    """The restored database against the manifest: Alembic revision, rows per table,
    field key ids present in the keyring and a sample of encrypted fields decrypting."""
    url = parse_url(raw_url) if isinstance(raw_url, str) else raw_url
    engine = make_engine(url.render_as_string(hide_password=False), create_dir=False)
    problems: list[str] = []
    info = SnapshotInfo(engine_kind(url))
    sampled = 0
    try:
        with engine.connect() as conn:
            describe(conn, info)
            for table, columns in ENCRYPTED_COLUMNS.items():
                t = Base.metadata.tables[table]
                cols = [t.c[f"{c}_enc"] for c in columns]
                rows = conn.execute(select(t.c.id, *cols).limit(SAMPLE_ROWS)).all()
                for row in rows:
                    row_id = row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0]))
                    for name, value in zip(columns, row[1:], strict=True):
                        if value is None:
                            continue
                        sampled += 1
                        try:
                            cipher.decrypt(bytes(value), table=table, column=name,
                                           row_id=row_id)
                        except DecryptionError as exc:
                            problems.append(str(exc))
    finally:
        engine.dispose()
    if info.alembic_revision != manifest.get("alembic_revision"):
        problems.append(f"Alembic revision {info.alembic_revision} differs from the "
                        f"manifest's {manifest.get('alembic_revision')}")
    expected = manifest.get("row_counts") or {}
    for table in sorted(set(expected) | set(info.row_counts)):
        got, want = info.row_counts.get(table), expected.get(table)
        if got != want:
            problems.append(f"table {table}: {got} rows restored, the manifest says {want}")
    missing = [k for k in manifest.get("field_key_ids", []) if k not in cipher.keyring.field_keys]
    if missing:
        problems.append(f"field key id(s) {missing} needed by the data are not in the keyring")
    return RestoreCheck(info.alembic_revision, info.row_counts, sampled, problems)


# ---------------------------------------------------------------------------- replace


def replace_sqlite(live: Path, restored: Path, stamp: str) -> Path:
    """Move the live file aside as ``<name>.replaced-<stamp>`` (with its WAL, after a
    checkpoint) and the restored file into its place. Returns the old file's new path."""
    import sqlite3

    conn = sqlite3.connect(live)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    old = live.with_name(f"{live.name}.replaced-{stamp}")
    if old.exists():
        raise InputError(f"{old} exists")
    live.rename(old)
    for suffix in ("-wal", "-shm"):
        side = Path(str(live) + suffix)
        if side.exists():
            side.rename(Path(str(old) + suffix))
    restored.rename(live)
    fsync_dir(live.parent)
    return old


def replace_postgres(live: URL, restored: URL, stamp: str) -> str:
    """Rename the live database to ``<name>_replaced_<stamp>`` and the restored one to
    the live name. PostgreSQL refuses while anyone is connected to the live database."""
    old_name = f"{live.database}_replaced_{stamp}"
    admin = _admin_engine(live)
    try:
        with admin.connect() as conn:
            q = admin.dialect.identifier_preparer.quote_identifier
            try:
                conn.execute(text(f"ALTER DATABASE {q(str(live.database))} RENAME TO "
                                  f"{q(old_name)}"))
            except Exception as exc:
                raise RefusedError(
                    f"cannot rename the live database: {_first_line(str(exc).encode())}; "
                    "stop the console, ingest and other clients first. The restored "
                    f"database {restored.database} is kept"
                ) from None
            conn.execute(text(f"ALTER DATABASE {q(str(restored.database))} RENAME TO "
                              f"{q(str(live.database))}"))
    finally:
        admin.dispose()
    return old_name

