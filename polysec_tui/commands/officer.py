"""`polysec officer ...`, `polysec login | logout | whoami`."""

from __future__ import annotations

import uuid

import click

from polysec_tui.commands.common import (
    actor_of,
    authenticated,
    current_token,
    emit_json,
    prompt_secret,
    runtime_of,
    session_file,
    settings_of,
    write_session_token,
)
from polysec_tui.errors import InputError
from polysec_tui.services import officers, sessions
from polysec_tui.services.auth import ROLES
from polysec_tui.services.officers import Enrolment


def show_enrolment(enrolment: Enrolment) -> None:
    """The provisioning URI and a terminal QR code, shown once: the secret is stored
    encrypted and never displayed again."""
    import segno

    click.echo(f"Authenticator for {enrolment.officer} (shown once, scan it now):")
    click.echo(enrolment.uri)
    qr = segno.make(enrolment.uri, error="m")
    qr.terminal(compact=True)


@click.group()
def officer() -> None:
    """Officers of the console (admin only, except passwd)."""


@officer.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.pass_context
def add(ctx: click.Context, name: str, role: str) -> None:
    """Add officer NAME. People get a password (asked; read from stdin without a
    terminal) and an authenticator (shown once); automation officers get neither and
    use tokens (`officer token create`)."""
    actor = actor_of(ctx, "officers.manage")
    password = None
    if role != "automation":
        password = prompt_secret("Initial password")
    enrolment = officers.add_officer(runtime_of(ctx), actor, name, role, password)
    click.echo(f"officer {name} added with role {role}")
    if enrolment:
        show_enrolment(enrolment)


@officer.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List officers."""
    actor = actor_of(ctx, "read")
    views = officers.list_officers(runtime_of(ctx), actor)
    if as_json:
        emit_json([v.as_dict() for v in views])
        return
    for v in views:
        state = "disabled" if v.disabled else ("locked" if v.locked_until else "active")
        last = f"{v.last_login_at:%Y-%m-%d %H:%M}" if v.last_login_at else "never"
        totp_state = "totp" if v.has_totp else ("token" if v.role == "automation" else "NO TOTP")
        click.echo(f"{v.name:<24} {v.role:<10} {state:<8} {totp_state:<7} last login {last}")


@officer.command()
@click.argument("name")
@click.pass_context
def disable(ctx: click.Context, name: str) -> None:
    """Disable NAME and end all its sessions and tokens at once."""
    actor = actor_of(ctx, "officers.manage")
    ended = officers.set_disabled(runtime_of(ctx), actor, name, True)
    click.echo(f"officer {name} disabled; {ended} session(s) ended")


@officer.command()
@click.argument("name")
@click.pass_context
def enable(ctx: click.Context, name: str) -> None:
    """Enable NAME again (and clear a lockout)."""
    actor = actor_of(ctx, "officers.manage")
    officers.set_disabled(runtime_of(ctx), actor, name, False)
    click.echo(f"officer {name} enabled")


@officer.command()
@click.option("--code", help="A fresh authenticator code (asked if not given).")
@click.pass_context
def passwd(ctx: click.Context, code: str | None) -> None:
    """Change your own password (current password and a fresh code)."""
    actor = actor_of(ctx, "read")
    current = prompt_secret("Current password")
    new = prompt_secret("New password")
    repeat = prompt_secret("Repeat new password")
    if new != repeat:
        raise InputError("the new passwords differ")
    officers.change_password(runtime_of(ctx), actor, current, new,
                             prompt_secret("Authenticator code", code))
    click.echo("password changed")


@officer.command("totp-reset")
@click.argument("name")
@click.option("--reason", required=True)
@click.pass_context
def totp_reset(ctx: click.Context, name: str, reason: str) -> None:
    """Ask for a new authenticator for NAME; another admin approves
    (`polysec approvals approve ID`)."""
    actor = actor_of(ctx, "officers.manage")
    request_id = officers.request_totp_reset(runtime_of(ctx), actor, name, reason)
    click.echo(f"request {request_id} opened; another admin must approve it")


@officer.group()
def token() -> None:
    """Tokens of automation officers (POLYSEC_TOKEN)."""


@token.command("create")
@click.argument("name")
@click.option("--days", type=click.IntRange(1, 366), help="Lifetime (default from config).")
@click.pass_context
def token_create(ctx: click.Context, name: str, days: int | None) -> None:
    """Create a token for automation officer NAME; printed once."""
    from datetime import timedelta

    actor = actor_of(ctx, "officers.manage")
    value, token_id = sessions.create_token(
        runtime_of(ctx), actor, name, timedelta(days=days) if days else None
    )
    click.echo(f"token {token_id} (store it now, it is not shown again):", err=True)
    click.echo(value)


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke token TOKEN_ID."""
    actor = actor_of(ctx, "officers.manage")
    try:
        parsed = uuid.UUID(token_id)
    except ValueError:
        raise InputError(f"{token_id!r} is not a token id") from None
    sessions.revoke_token(runtime_of(ctx), actor, parsed)
    click.echo(f"token {token_id} revoked")


# ------------------------------------------------------------------------ login/logout


@click.command()
@click.option("--name", prompt="Officer", help="Your officer name.")
@click.option("--code", help="Authenticator code (asked if not given).")
@click.pass_context
def login(ctx: click.Context, name: str, code: str | None) -> None:
    """Log in with password and authenticator code; later commands use the session
    (a token file readable by you only) until logout, idle lock or expiry."""
    rt = runtime_of(ctx)
    password = prompt_secret("Password")
    token, actor = sessions.login(rt, name, password, prompt_secret("Authenticator code", code))
    path = session_file(settings_of(ctx))
    write_session_token(path, token)
    click.echo(f"logged in as {actor.name} ({actor.role}); session file {path}")


@click.command()
@click.pass_context
def logout(ctx: click.Context) -> None:
    """End your session."""
    settings = settings_of(ctx)
    token = current_token(settings)
    path = session_file(settings)
    ended = sessions.logout(runtime_of(ctx), token) if token else False
    path.unlink(missing_ok=True)
    click.echo("logged out" if ended else "no live session")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def whoami(ctx: click.Context, as_json: bool) -> None:
    """The officer of the current session."""
    actor = authenticated(ctx)
    if as_json:
        emit_json({"name": actor.name, "role": actor.role, "session": actor.session_id})
    else:
        click.echo(f"{actor.name} ({actor.role})")
