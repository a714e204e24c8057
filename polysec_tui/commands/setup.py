"""`polysec init` and `polysec db upgrade | current | downgrade`."""

from __future__ import annotations

import click

from polysec_tui.commands.common import echo, emit_json, settings_of
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import check_connection, make_engine, redact
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.text import printable


@click.command()
@click.option("--admin", "admin_name", default="admin", show_default=True,
              help="Name of the first admin, created when the console has no officer.")
@click.option("--no-admin", is_flag=True, help="Do not create the first admin now.")
@click.pass_context
def init(ctx: click.Context, admin_name: str, no_admin: bool) -> None:
    """Create the keyring (mode 0600, never overwritten), upgrade the schema and, on an
    empty console, create the first admin and show its authenticator once.

    Running it again is harmless: an existing keyring is kept, an up-to-date schema is
    left alone and no second admin is made. Without a terminal the admin's password is
    read from stdin.
    """
    settings = settings_of(ctx)
    engine = make_engine(settings.db_url)
    check_connection(engine)
    path = settings.keyring_path
    if not path.exists() and migrate.holds_accounts(engine):
        raise RefusedError(
            f"database {redact(engine.url)} already holds encrypted accounts but keyring "
            f"{path} does not exist; point --keyring at the keyring of this database"
        )
    created = write_new_keyring(path, Keyring.generate())
    load_keyring(path)  # refuses a keyring with loose permissions or a broken document
    echo(f"keyring {path}: {'created (mode 0600)' if created else 'exists, kept'}")
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    after = migrate.current_revision(engine)
    state = "already current" if before == after else f"upgraded from {before or 'empty'}"
    echo(f"database {redact(engine.url)}: schema {after} ({state})")
    engine.dispose()
    if not no_admin:
        _bootstrap_admin(ctx, admin_name)


def _bootstrap_admin(ctx: click.Context, name: str) -> None:
    from polysec_tui.commands.common import prompt_secret, runtime_of
    from polysec_tui.commands.officer import show_enrolment
    from polysec_tui.services.officers import registry as officers

    rt = runtime_of(ctx)
    if officers.has_officers(rt):
        return
    echo(f"creating the first admin, {name}")
    password = prompt_secret(f"Password for {name}")
    enrolment = officers.bootstrap_admin(rt, name, password)
    show_enrolment(enrolment)
    echo(f"admin {name} created; log in with `polysec login --name {name}`")


@click.group()
def db() -> None:
    """Schema migrations (Alembic, shipped inside polysec)."""


def _engine(ctx: click.Context):  # type: ignore[no-untyped-def]
    engine = make_engine(settings_of(ctx).db_url)
    check_connection(engine)
    return engine


@db.command()
@click.argument("revision", default="head")
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    engine = _engine(ctx)
    _check_revision(revision)
    migrate.upgrade(engine, revision)
    echo(f"schema at {migrate.current_revision(engine)}")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def current(ctx: click.Context, as_json: bool) -> None:
    """Show the schema revision of the database and the newest one polysec knows."""
    engine = _engine(ctx)
    rev = migrate.current_revision(engine)
    head = migrate.head_revision()
    if as_json:
        emit_json({"database": redact(engine.url), "current": rev, "head": head,
                   "up_to_date": rev == head})
        return
    note = "up to date" if rev == head else f"behind head {head}; run `polysec db upgrade`"
    echo(f"{rev or 'empty (no schema)'} ({note})")


@db.command()
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask: downgrading drops tables and data.")
@click.pass_context
def downgrade(ctx: click.Context, revision: str, yes: bool) -> None:
    """Downgrade the schema to REVISION ("base" removes every table)."""
    engine = _engine(ctx)
    _check_revision(revision)
    if not yes:
        click.confirm(printable(
            f"Downgrade {redact(engine.url)} to {revision}? Tables of newer revisions and "
            "their data are dropped", limit=1000), abort=True,
        )
    migrate.downgrade(engine, revision)
    echo(f"schema at {migrate.current_revision(engine) or 'base (empty)'}")


def _check_revision(revision: str) -> None:
    if revision in {"head", "base"} or revision in migrate.known_revisions():
        return
    raise InputError(
        f"unknown revision {revision!r}; known: {', '.join(migrate.known_revisions())}"
    )
