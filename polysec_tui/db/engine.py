"""Engines and sessions for the three supported databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from polysec_tui.errors import InputError
from polysec_tui.files import private_umask

# Plain scheme names map to the drivers polysec ships with.
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "sqlite": "sqlite",
}


def parse_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise InputError(f"database URL {redact(raw)!r} is not a valid URL") from None
    driver = _DRIVERS.get(url.drivername)
    if driver is not None:
        url = url.set(drivername=driver)
    if url.get_backend_name() not in {"sqlite", "postgresql", "mysql", "mariadb"}:
        raise InputError(
            f"unsupported database {url.get_backend_name()!r}: use sqlite, postgresql or mariadb"
        )
    if url.get_backend_name() in {"mysql", "mariadb"} and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


def redact(raw: str | URL) -> str:
    """The URL with any password hidden, for messages."""
    try:
        url = make_url(raw) if isinstance(raw, str) else raw
    except (ArgumentError, ValueError):
        return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


# Execution option marking a connection that will write (see _sqlite_setup).
WRITE_OPTION = "polysec_write"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "do_connect")
    def _owner_only(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        # A database file sqlite creates is owner-only from its first byte (its -wal,
        # -shm and -journal files take the database file's mode).
        with private_umask():
            return dialect.connect(*cargs, **cparams)

    # pysqlite's own transaction handling defers BEGIN and breaks transactional DDL and
    # SAVEPOINTs; take control of BEGIN ourselves (SQLAlchemy's documented recipe).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 10000")
        cursor.execute("PRAGMA synchronous = NORMAL")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Write transactions take the write lock up front (BEGIN IMMEDIATE): a deferred
        # one that reads first would fail with SQLITE_BUSY when it tries to write after
        # another writer committed. Reads stay deferred and never wait for writers.
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(raw_url: str, *, create_dir: bool = True, **kwargs: Any) -> Engine:
    url = parse_url(raw_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database).expanduser()
        if create_dir:
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create the directory of database {path}: "
                                 f"{exc.strerror}") from None
        url = url.set(database=str(path))
    try:
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
    except NoSuchModuleError:
        raise InputError(f"no driver installed for {redact(url)}") from None
    if url.get_backend_name() == "sqlite":
        _sqlite_setup(engine)
    return engine


def check_connection(engine: Engine) -> None:
    """Fail early, in one line, when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise InputError(f"cannot connect to database {redact(engine.url)}: {reason}") from None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
