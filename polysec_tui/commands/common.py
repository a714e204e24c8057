"""Helpers shared by subcommands: settings and runtime from the context, the officer
behind a command, the session token file, secret prompts and JSON output."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import click

from polysec_tui.config import Settings, app_dir
from polysec_tui.crypto.keyring import check_private
from polysec_tui.db.types import MAX_ID
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.files import atomic_write
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime, open_runtime
from polysec_tui.text import json_escape_hidden, printable, visible_lines

# A row id argument: a number the database can hold (a larger one is a usage error,
# exit 2, not a database error).
RECORD_ID = click.IntRange(1, MAX_ID)
# A count or offset that ends up in SQL (LIMIT, OFFSET, a batch size): within BIGINT.
COUNT = click.IntRange(1, MAX_ID)
OFFSET = click.IntRange(0, MAX_ID)

TOKEN_ENV = "POLYSEC_TOKEN"  # noqa: S105 - the variable's name, not a token
SESSION_FILE_ENV = "POLYSEC_SESSION_FILE"
_RUNTIME_KEY = "polysec.runtime"


def settings_of(ctx: click.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def runtime_of(ctx: click.Context) -> Runtime:
    """One runtime per command invocation (engine disposed when the command ends)."""
    root = ctx.find_root()
    rt = root.meta.get(_RUNTIME_KEY)
    if rt is None:
        rt = open_runtime(settings_of(ctx))
        root.meta[_RUNTIME_KEY] = rt
        root.call_on_close(rt.engine.dispose)
    assert isinstance(rt, Runtime)
    return rt


# ------------------------------------------------------------------------ session file


def session_file(settings: Settings) -> Path:
    """One token file per database, so the demo and the real console never mix."""
    override = os.environ.get(SESSION_FILE_ENV)
    if override:
        return Path(override).expanduser()
    digest = hashlib.sha256(settings.db_url.encode()).hexdigest()[:16]
    return app_dir() / "sessions" / f"{digest}.token"


def write_session_token(path: Path, token: str) -> None:
    """Owner-only, written whole (temp file, fsync, rename) or not at all."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, (token + "\n").encode(), what="session file")


def read_session_token(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        check_private(path)
    except RefusedError as exc:
        raise RefusedError(str(exc).replace("keyring", "session file")) from None
    return path.read_text(encoding="utf-8").strip() or None


def current_token(settings: Settings) -> str | None:
    return os.environ.get(TOKEN_ENV) or read_session_token(session_file(settings))


def authenticated(ctx: click.Context) -> Actor:
    """The officer behind this command. Automation uses POLYSEC_TOKEN; people
    `polysec login` first."""
    from polysec_tui.services.officers.sessions import authenticate

    token = current_token(settings_of(ctx))
    if not token:
        raise RefusedError(f"not logged in: run `polysec login` (or set {TOKEN_ENV})")
    return authenticate(runtime_of(ctx), token)


def actor_of(ctx: click.Context, permission: str) -> Actor:
    """The authenticated officer, allowed to `permission` (exit 3 otherwise)."""
    actor = authenticated(ctx)
    require(actor, permission)
    return actor


# ---------------------------------------------------------------------------- prompts


def prompt_secret(label: str, given: str | None = None) -> str:
    """A password or code: from the option if given, else a hidden prompt (never echoed)."""
    if given is not None:
        return given
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise InputError(f"{label} required (no terminal to ask on)")
        return line.rstrip("\n")
    value = click.prompt(printable(label), hide_input=True, default="", show_default=False)
    assert isinstance(value, str)
    return value


# ------------------------------------------------------------------------------- JSON


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def to_json(doc: Any) -> str:
    """Indented JSON; controls, C1, bidi and invisible characters as ASCII escapes."""
    return json_escape_hidden(json.dumps(doc, default=_default, indent=2, ensure_ascii=False))


def json_line(doc: Any) -> str:
    """One compact JSON line, ASCII only (a log line for journald or a SIEM)."""
    return json.dumps(doc, default=_default, separators=(",", ":"), ensure_ascii=True)


def emit_json(doc: Any) -> None:
    click.echo(to_json(doc))


# ----------------------------------------------------------------------------- text


def echo(text: object = "", *, err: bool = False, nl: bool = True,
         overwrite: bool = False) -> None:
    """The one way a command writes text for a person: every control character, C1
    control, bidi override and invisible character in it is shown as an escape and
    cannot act on the terminal; the line breaks the command writes stay. Untrusted values
    inside a line go through `visible` first, so that they cannot break the line."""
    # overwrite: a progress line that replaces the previous one (a CR of our own).
    click.echo(("\r" if overwrite else "") + visible_lines(str(text)), err=err, nl=nl)


def echo_record(fields: dict[str, Any], *, skip: tuple[str, ...] = ()) -> None:
    """One record as aligned text, the way `--json` gives it to machines: a label per
    line, nested tables indented under their label, lists joined, times to the second
    in UTC, nothing as ``-``. Values are untrusted text, shown inert."""
    shown = {k: v for k, v in fields.items() if k not in skip}
    width = max([len(k) for k in shown] + [0]) + 2

    def plain(value: Any) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, datetime):
            return f"{value:%Y-%m-%d %H:%M:%S} UTC"
        if isinstance(value, (list, tuple)):
            return ", ".join(plain(v) for v in value) or "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return printable(value, limit=2000)

    for key, value in shown.items():
        label = key.replace("_", " ")
        if isinstance(value, dict):
            echo(f"{label}:" if value else f"{label:<{width}}-")
            inner = max([len(str(k)) for k in value] + [0]) + 2
            for sub, item in value.items():
                echo(f"  {printable(str(sub).replace('_', ' '), limit=64):<{inner}}"
                     f"{plain(item)}")
        else:
            echo(f"{label:<{width}}{plain(value)}")
