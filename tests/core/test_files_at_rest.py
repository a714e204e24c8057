"""Files at rest (issue 16): every SQLite database polysec creates is owner-only from its
first byte, whatever the umask of the shell that ran polysec."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from tests.support.cli import run_process


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what a login shell usually has: files 0644
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("loose_umask")
def test_a_new_sqlite_database_and_its_wal_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:  # a write: the WAL file exists now
            conn.execute(text("CREATE TABLE probe (x INTEGER)"))
            wal = Path(f"{path}-wal")
            assert wal.exists() and mode(wal) == 0o600
        assert mode(path) == 0o600
    finally:
        engine.dispose()
    # The umask of the process is what it was: only sqlite's open ran under 077.
    probe = tmp_path / "after"
    probe.touch()
    assert mode(probe) == 0o644


@pytest.mark.usefixtures("loose_umask")
def test_init_creates_an_owner_only_database(tmp_path: Path) -> None:
    db = tmp_path / "polysec.db"
    env = {"POLYSEC_DB_URL": f"sqlite:///{db}", "POLYSEC_KEYRING": str(tmp_path / "k.json"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    result = run_process("init", "--no-admin", env=env)  # inherits the 022 umask
    assert result.code == 0, result.err
    assert mode(db) == 0o600
