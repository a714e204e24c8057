"""Fixtures: every database test runs on SQLite, PostgreSQL and MariaDB.

PostgreSQL and MariaDB come from POLYSEC_TEST_POSTGRES_URL and POLYSEC_TEST_MYSQL_URL
(a server URL with a user allowed to create databases). Each test run creates its own
database on each server and drops it at the end; tables are emptied between tests.
Without the variables those tests are skipped with a reason, unless CI is set: then a
missing server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert, text

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine, parse_url
from polysec_tui.db.models import AuditHead, Base
from polysec_tui.services.auditchain import GENESIS, HEAD_ID
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW

# Fixtures shared across folders live in tests/support; these modules of it define some.
pytest_plugins = [
    "tests.support.dashboard",  # pinned_cli
    "tests.support.sftp",  # server, remote (a real OpenSSH server)
    "tests.support.tui",  # snapshot_runtime, snapshot_officer
]

SERVER_ENV = {"postgresql": "POLYSEC_TEST_POSTGRES_URL", "mariadb": "POLYSEC_TEST_MYSQL_URL"}
BACKENDS = ["sqlite", "postgresql", "mariadb"]


def _server_url(backend: str) -> str:
    env = SERVER_ENV[backend]
    url = os.environ.get(env)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{env} is not set; CI must test {backend}")
        pytest.skip(f"{env} not set: {backend} tests skipped")
    return url


class ServerDatabases:
    """Per-run databases on the servers, created on first use and dropped at the end."""

    def __init__(self) -> None:
        self.created: dict[str, tuple[str, Engine]] = {}
        self.admins: dict[str, tuple[Engine, str]] = {}

    def get(self, backend: str) -> tuple[str, Engine]:
        if backend not in self.created:
            base = parse_url(_server_url(backend))
            name = f"polysec_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            admin = make_engine(base.render_as_string(hide_password=False),
                                isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                charset = " CHARACTER SET utf8mb4" if backend == "mariadb" else ""
                conn.execute(text(f"CREATE DATABASE {name}{charset}"))
            self.admins[backend] = (admin, name)
            url = base.set(database=name).render_as_string(hide_password=False)
            engine = make_engine(url)
            migrate.upgrade(engine)
            self.created[backend] = (url, engine)
        return self.created[backend]

    def drop_all(self) -> None:
        for _url, engine in self.created.values():
            engine.dispose()
        for admin, name in self.admins.values():
            with admin.connect() as conn:
                if admin.dialect.name == "postgresql":
                    conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            admin.dispose()


@pytest.fixture(scope="session")
def server_databases() -> Iterator[ServerDatabases]:
    servers = ServerDatabases()
    yield servers
    servers.drop_all()


def empty_tables(engine: Engine) -> None:
    """Back to the state right after the migrations (the audit chain at its genesis)."""
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
        conn.execute(insert(AuditHead).values(id=HEAD_ID, seq=0, hash=GENESIS))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path,
           server_databases: ServerDatabases) -> Iterator[str]:
    """A migrated, empty database on each backend."""
    backend = request.param
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'polysec.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
        return
    url, engine = server_databases.get(backend)
    empty_tables(engine)
    yield url


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    path = tmp_path / "keyring.json"
    write_new_keyring(path, Keyring.generate(now=FIXED_NOW))
    return path


@pytest.fixture
def settings(db_url: str, keyring_path: Path) -> Settings:
    return Settings(db_url=db_url, keyring_path=keyring_path)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    from polysec_tui.crypto.keyring import load_keyring

    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=lambda: FIXED_NOW)
    yield rt
    rt.engine.dispose()


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for running `polysec` against the test database."""
    monkeypatch.setenv("POLYSEC_DB_URL", settings.db_url)
    monkeypatch.setenv("POLYSEC_KEYRING", str(settings.keyring_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return {"POLYSEC_DB_URL": settings.db_url, "POLYSEC_KEYRING": str(settings.keyring_path),
            "XDG_CONFIG_HOME": str(tmp_path / "xdg")}


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt at 2**15 costs ~0.1 s a hash; tests that log officers in dozens of times use
    2**10. Verification reads the cost from the stored hash, so nothing else changes;
    test_password_hashing_and_policy checks the real parameters."""
    from polysec_tui.crypto import passwords

    monkeypatch.setattr(passwords, "SCRYPT_LOG2_N", 10)


@pytest.fixture(autouse=True)
def steady_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A focused Input keeps its cursor shown: Textual blinks it on a 0.5 s wall-clock
    timer, so a snapshot taken 0.4 s or 0.6 s after the focus showed the cursor or not
    (on a busy machine the account, timeline and audit-log snapshots failed that way).
    Focus, blur and typing still show and hide it as they do in the console."""
    from textual.widgets import Input

    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
