"""Alembic, driven from inside the package (the wheel carries the migrations).

Alembic is imported only by the functions that need it: importing it costs about 80 ms
of CPU, and every command that opens the database checks the schema first
(`services.runtime.open_runtime`). That check goes through :func:`schema_is_current`,
which reads the migration files' ``revision``/``down_revision`` lines as text and the
``alembic_version`` table with plain SQL; whenever that is not a plain yes (several
heads, another revision, no table), the caller asks alembic as before.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from polysec_tui.db.models import Account
from polysec_tui.errors import InputError

if TYPE_CHECKING:
    from alembic.config import Config

_DECLARED = re.compile(
    r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(?:'([^'\n]*)'|\"([^\"\n]*)\"|(None))\s*$",
    re.MULTILINE)


def declared_head() -> str | None:
    """The single head of the migration files, read as text (no alembic); None when the
    files do not say it plainly (a file without both lines as a string or None, a merge,
    several heads)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        items = list((resources.files("polysec_tui.migrations") / "versions").iterdir())
    except OSError:
        return None  # `head_revision` then says what is wrong
    for item in items:
        if not item.name.endswith(".py") or item.name.startswith("_"):
            continue
        found = {m.group(1): m.group(2) or m.group(3) for m in
                 _DECLARED.finditer(item.read_text(encoding="utf-8"))}
        if set(found) != {"revision", "down_revision"} or not found["revision"]:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def schema_is_current(engine: Engine) -> bool:
    """True when the database is plainly at the single head; False means "ask alembic"
    (`current_revision`, `head_revision`), not necessarily "outdated"."""
    head = declared_head()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except SQLAlchemyError:
        return False
    return [row[0] for row in stored] == [head]


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "polysec_tui:migrations")
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The migrations' head; a one-line refusal when they cannot be read (a polysec
    reinstalled under a running console, a broken install), never alembic's own text."""
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    try:
        head = ScriptDirectory.from_config(alembic_config_without_engine()).get_current_head()
    except (CommandError, OSError, ValueError):
        head = None
    if head is None:
        raise InputError("cannot check the database schema: this installation's migrations "
                         "are missing or unreadable; reinstall polysec (was it reinstalled "
                         "while this command ran?)")
    return head


def alembic_config_without_engine() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "polysec_tui:migrations")
    return cfg


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)


def known_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config_without_engine())
    return [rev.revision for rev in script.walk_revisions()]


def holds_accounts(engine: Engine) -> bool:
    """Whether the database holds client accounts (encrypted data a new keyring could
    not read): `polysec init` refuses to make a keyring for such a database."""
    if not inspect(engine).has_table(Account.__tablename__):
        return False
    with engine.connect() as conn:
        return bool(conn.scalar(select(func.count()).select_from(Account)))
