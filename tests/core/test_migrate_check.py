"""The schema check at start-up (`migrate.schema_is_current`) reads the migration files
as text and the version table with plain SQL, without alembic; it must agree with
alembic, and anything but a plain "at the head" is left to alembic (False)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine


def test_declared_head_is_alembics_head() -> None:
    assert migrate.declared_head() == migrate.head_revision()


def test_schema_is_current_only_at_the_head(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert not migrate.schema_is_current(engine)  # no alembic_version table
    migrate.upgrade(engine)
    assert migrate.schema_is_current(engine)
    revisions = migrate.known_revisions()  # newest first
    migrate.downgrade(engine, revisions[1])
    assert not migrate.schema_is_current(engine)
    engine.dispose()


def test_a_file_it_cannot_read_plainly_leaves_the_answer_to_alembic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # As if every file declared its revision in a way the pattern does not read.
    monkeypatch.setattr(migrate, "_DECLARED", re.compile(r"^(revision)\b(?!)()()()"))
    assert migrate.declared_head() is None


def test_the_check_does_not_import_alembic(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    code = ("import sys; from polysec_tui.db import migrate; "
            "from polysec_tui.db.engine import make_engine; "
            f"e = make_engine({str(engine.url)!r}); assert migrate.schema_is_current(e); "
            "print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
    engine.dispose()


def test_unreadable_migrations_are_one_line_not_alembics_text(monkeypatch, tmp_path) -> None:
    """A polysec reinstalled under a running console (the migrations gone for a moment)
    gets a one-line reason, not alembic's "Please use the 'init' command"."""
    import pytest
    from alembic.config import Config

    from polysec_tui.db import migrate
    from polysec_tui.errors import InputError

    def missing() -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(tmp_path / "gone"))
        return cfg

    monkeypatch.setattr(migrate, "alembic_config_without_engine", missing)
    with pytest.raises(InputError) as refused:
        migrate.head_revision()
    message = str(refused.value)
    assert message.startswith("cannot check the database schema") and "\n" not in message
    assert "init" not in message and "alembic" not in message.lower()
