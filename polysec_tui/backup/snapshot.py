"""Consistent snapshots of the live database, streamed in fixed-size reads.

- SQLite: the online backup API copies the database into a file (0600 from creation) in
  a private temporary directory (never a copy of the live file, which may have a WAL
  beside it); that copy is streamed and deleted. A directory left by a killed process is
  removed by the next `create` (backup/tempdirs.py).
- PostgreSQL: ``pg_dump -Fc -Z0`` on the snapshot of a REPEATABLE READ transaction
  exported with ``pg_export_snapshot()``; the row counts, Alembic revision and field key
  ids are read in that same transaction, so they describe exactly the dumped data.
- MariaDB: ``mariadb-dump --single-transaction``; row counts are counted from the dump
  stream itself (one extended INSERT a line), so they too describe exactly what was
  dumped. The revision and key ids come from a consistent-snapshot transaction opened
  just before the dump.

Passwords go to the dump tools through PGPASSWORD / MYSQL_PWD, never on argv.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, LargeBinary, func, inspect, select, text, type_coerce
from sqlalchemy.engine import URL

from polysec_tui.backup.tempdirs import private_tempdir
from polysec_tui.db.engine import make_engine, parse_url
from polysec_tui.db.models import ENCRYPTED_COLUMNS, Base
from polysec_tui.errors import CheckFailed, InputError
from polysec_tui.files import private_umask

READ_SIZE = 64 * 1024
SNAPSHOT_KIND = "snapshot"  # <tmp>/polysec-snapshot-*: see backup/tempdirs.py


class SnapshotError(CheckFailed):
    """The dump tool or the database failed; the message has the tool's first line."""


@dataclass
class SnapshotInfo:
    engine: str
    alembic_revision: str | None = None
    field_key_ids: list[int] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    estimated_bytes: int | None = None


def engine_kind(url: URL) -> str:
    backend = url.get_backend_name()
    return "mariadb" if backend in {"mysql", "mariadb"} else backend


def table_names() -> list[str]:
    return [t.name for t in Base.metadata.sorted_tables] + ["alembic_version"]


def describe(conn: Connection, info: SnapshotInfo, *, count_rows: bool = True) -> None:
    """Revision, field key ids and (optionally) row counts, read on ``conn``."""
    present = set(inspect(conn).get_table_names())
    if "alembic_version" in present:
        info.alembic_revision = conn.scalar(text("SELECT version_num FROM alembic_version"))
    key_ids: set[int] = set()
    for table, columns in ENCRYPTED_COLUMNS.items():
        if table not in present:
            continue
        t = Base.metadata.tables[table]
        for column in columns:
            col = t.c[f"{column}_enc"]
            head = type_coerce(func.substr(col, 2, 4), LargeBinary)
            for (raw,) in conn.execute(select(head).where(col.is_not(None)).distinct()):
                if raw is not None and len(raw) == 4:
                    key_ids.add(int.from_bytes(bytes(raw), "big"))
    info.field_key_ids = sorted(key_ids)
    if count_rows:
        info.row_counts = {
            name: int(conn.scalar(text(f"SELECT COUNT(*) FROM {name}")) or 0)
            for name in table_names() if name in present
        }


def _first_line(data: bytes) -> str:
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()
    return "no message"


@dataclass
class Tool:
    """A dump/restore tool run with its password in the environment."""

    argv: list[str]
    env: dict[str, str]

    @staticmethod
    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            raise InputError(f"{name} is not installed (needed for this database)")
        return path


def pg_tool(name: str, url: URL, *args: str, database: str | None = None) -> Tool:
    argv = [Tool.find(name), "--no-password"]
    if url.host:
        argv += ["-h", url.host]
    if url.port:
        argv += ["-p", str(url.port)]
    if url.username:
        argv += ["-U", url.username]
    argv += [*args, "-d", database or url.database or "postgres"]
    env = {**os.environ}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return Tool(argv, env)


def maria_tool(name: str, url: URL, *args: str) -> Tool:
    argv = [Tool.find(name), "--protocol=tcp" if url.host else "--protocol=socket"]
    if url.host:
        argv += ["-h", url.host]
    if url.port:
        argv += ["-P", str(url.port)]
    if url.username:
        argv += ["-u", url.username]
    argv += list(args)
    env = {**os.environ}
    env.pop("MYSQL_PWD", None)
    if url.password is not None:
        env["MYSQL_PWD"] = str(url.password)
    return Tool(argv, env)


@contextmanager
def _run_producer(tool: Tool) -> Iterator[tuple[IO[bytes], Callable[[], None]]]:
    """The tool's stdout for fixed-size reads, and a check to call after EOF."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(tool.argv, stdout=subprocess.PIPE, stderr=errors,  # noqa: S603
                                stdin=subprocess.DEVNULL, env=tool.env)
        assert proc.stdout is not None

        def check() -> None:
            code = proc.wait()
            if code != 0:
                errors.seek(0)
                raise SnapshotError(
                    f"{Path(tool.argv[0]).name} failed (exit {code}): "
                    f"{_first_line(errors.read(4096))}"
                )

        try:
            yield proc.stdout, check
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()


# ----------------------------------------------------------------------------- SQLite


def _sqlite_snapshot(url: URL, info: SnapshotInfo) -> Iterator[bytes]:
    assert url.database
    source = Path(url.database)
    if not source.is_file():
        raise InputError(f"SQLite database {source} does not exist")
    with private_tempdir(SNAPSHOT_KIND) as tmp:
        copy = tmp / "snapshot.db"
        # The copy is 0600 from its first byte: created here, empty, under umask 077
        # (SQLite treats an empty file as an empty database), so that SQLite never
        # creates it; its journal takes the database file's mode. The umask lock is
        # held only for this, not for the copy (other threads open databases).
        with private_umask():
            os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600))
        src = sqlite3.connect(source)
        try:
            dst = sqlite3.connect(copy)
            try:
                src.backup(dst, pages=4096)
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        engine = make_engine(f"sqlite:///{copy}")
        try:
            with engine.connect() as conn:
                describe(conn, info)
        finally:
            engine.dispose()
        info.estimated_bytes = copy.stat().st_size
        with copy.open("rb") as fh:
            while data := fh.read(READ_SIZE):
                yield data


# -------------------------------------------------------------------------- PostgreSQL


def _postgres_snapshot(url: URL, info: SnapshotInfo) -> Iterator[bytes]:
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        repeatable = engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with repeatable as conn, conn.begin():
            # The dump runs on this transaction's snapshot, which stays open until it ends.
            snapshot_id = conn.scalar(text("SELECT pg_export_snapshot()"))
            describe(conn, info)
            info.estimated_bytes = conn.scalar(
                text("SELECT pg_database_size(current_database())"))
            tool = pg_tool("pg_dump", url, "-Fc", "-Z0", f"--snapshot={snapshot_id}")
            with _run_producer(tool) as (out, check):
                while data := out.read(READ_SIZE):
                    yield data
                check()
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- MariaDB

_STRING_OR_CLOSE = re.compile(rb"'(?:[^'\\]|\\.)*'|\)", re.DOTALL)
_INSERT = re.compile(rb"INSERT INTO `([^`]+)` VALUES")


class InsertCounter:
    """Counts rows in mariadb-dump output. An INSERT statement's rows follow its header
    on the same line or one a line (10.11 writes ``VALUES`` then ``(...),`` lines); a row
    is a parenthesised tuple of literals (numbers, quoted strings, 0x hex, NULL), so each
    ``)`` outside a quoted string closes exactly one row. Holds at most one line (bounded
    by the dump's --net-buffer-length)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._partial = b""
        self._table: str | None = None

    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)

    def close(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = b""

    def _line(self, line: bytes) -> None:
        start = 0
        if self._table is None:
            match = _INSERT.match(line)
            if match is None:
                return
            self._table = match.group(1).decode()
            start = match.end()
        rows = sum(1 for m in _STRING_OR_CLOSE.finditer(line, start) if m.group(0) == b")")
        self.counts[self._table] = self.counts.get(self._table, 0) + rows
        if line.rstrip().endswith(b";"):
            self._table = None


def mariadb_dump_args(database: str) -> list[str]:
    return ["--single-transaction", "--hex-blob", "--skip-lock-tables", "--no-tablespaces",
            "--skip-dump-date", "--default-character-set=utf8mb4",
            "--net-buffer-length=1048576", database]


def _mariadb_snapshot(url: URL, info: SnapshotInfo) -> Iterator[bytes]:
    assert url.database
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            describe(conn, info, count_rows=False)
            present = set(inspect(conn).get_table_names())
            info.estimated_bytes = int(conn.scalar(text(
                "SELECT COALESCE(SUM(data_length), 0) FROM information_schema.tables "
                "WHERE table_schema = DATABASE()")) or 0)
            conn.exec_driver_sql("COMMIT")
    finally:
        engine.dispose()
    counter = InsertCounter()
    tool = maria_tool("mariadb-dump", url, *mariadb_dump_args(url.database))
    with _run_producer(tool) as (out, check):
        while data := out.read(READ_SIZE):
            counter.feed(data)
            yield data
        check()
    counter.close()
    info.row_counts = {name: counter.counts.get(name, 0)
                       for name in table_names() if name in present}


def snapshot(raw_url: str) -> tuple[SnapshotInfo, Iterator[bytes]]:
    """The snapshot's info (filled in as the stream is read; complete once it is
    exhausted) and the stream of its bytes. Close the iterator to abandon it."""
    url = parse_url(raw_url)
    kind = engine_kind(url)
    info = SnapshotInfo(kind)
    producers: dict[str, Callable[[URL, SnapshotInfo], Iterator[bytes]]] = {
        "sqlite": _sqlite_snapshot,
        "postgresql": _postgres_snapshot,
        "mariadb": _mariadb_snapshot,
    }
    return info, producers[kind](url, info)
