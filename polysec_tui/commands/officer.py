"""`polysec officer ...`, `polysec login | logout | whoami`."""

from __future__ import annotations

import click

from polysec_tui.commands.common import (
    actor_of,
    authenticated,
    current_token,
    echo,
    emit_json,
    prompt_secret,
    runtime_of,
    session_file,
    settings_of,
    write_session_token,
)
from polysec_tui.errors import InputError
from polysec_tui.services import ids
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import reviews, sessions
from polysec_tui.services.officers.auth import ROLES
from polysec_tui.services.officers.registry import Enrolment, Granted


def show_enrolment(enrolment: Enrolment) -> None:
    """The provisioning URI and a terminal QR code, shown once: the secret is stored
    encrypted and never displayed again."""
    import segno

    echo(f"Authenticator for {enrolment.officer} (shown once, scan it now):")
    echo(enrolment.uri)
    qr = segno.make(enrolment.uri, error="m")
    qr.terminal(compact=True)


@click.group()
def officer() -> None:
    """Officers of the console (admin only, except passwd)."""


def _code(code: str | None) -> str:
    return prompt_secret("Your authenticator code", code)


def _granted(done: Granted, effect: str, pending: str) -> None:
    """``effect``: what happened at once; ``pending``: what a second officer's approval
    of the request will do."""
    if done.request_id is None:
        echo(effect)
    else:
        echo(f"request {done.request_id} opened: a second senior or admin approves it "
             f"(`polysec approvals approve {done.request_id}`) to {pending}")
    if done.enrolment:
        show_enrolment(done.enrolment)


_REASON = click.option("--reason", required=True,
                       help="Why (shown to the approver, kept in the audit log).")
_CODE = click.option("--code", help="Your fresh authenticator code (asked if not given).")


@officer.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@_REASON
@_CODE
@click.pass_context
def add(ctx: click.Context, name: str, role: str, reason: str, code: str | None) -> None:
    """Add officer NAME. People get an initial password (asked; read from stdin without a
    terminal) and an authenticator, shown to you once to hand over; automation officers
    get neither and use tokens (`officer token create`). A senior or admin takes effect
    when a second senior or admin approves (the set-up's second admin excepted)."""
    actor = actor_of(ctx, "officers.manage")
    password = None
    if role != "automation":
        password = prompt_secret("Initial password")
    done = officers.add_officer(runtime_of(ctx), actor, name, role, password, _code(code),
                                reason)
    _granted(done, f"officer {name} added with role {role}",
             f"add officer {name} with role {role}")


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
        asked = f"  granted at the request of {', '.join(v.granted_by)}" if v.granted_by else ""
        echo(f"{v.name:<24} {v.role:<10} {state:<8} {totp_state:<7} last login {last}{asked}")


@officer.command()
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@_REASON
@_CODE
@click.pass_context
def role(ctx: click.Context, name: str, role: str, reason: str, code: str | None) -> None:
    """Change NAME's role to ROLE. A raise takes effect when a second senior or admin
    approves; a lowering at once (and ends NAME's sessions)."""
    actor = actor_of(ctx, "officers.manage")
    done = officers.set_role(runtime_of(ctx), actor, name, role, _code(code), reason)
    _granted(done, f"officer {name} has role {role} now", f"give officer {name} role {role}")


@officer.command()
@click.argument("name", required=False)
@click.option("--confirm", "decision", flag_value="confirmed",
              help="NAME's access is still needed as it is.")
@click.option("--revoke", "decision", flag_value="revoked",
              help="NAME's access is no longer needed: disable NAME now.")
@click.option("--reason", help="What was checked (required with --confirm or --revoke).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def review(ctx: click.Context, name: str | None, decision: str | None, reason: str | None,
           as_json: bool) -> None:
    """The periodic access review. Without NAME: every officer, their role, who granted
    it, their last login and last review ("due" when enabled and not reviewed in 90
    days). With NAME: --confirm or --revoke their access, with --reason (audited); a
    revocation disables NAME at once. Admins only, never the officer who asked for or
    approved NAME's grants, never NAME."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "officers.manage")
    if name is None:
        if decision is not None or reason is not None:
            raise InputError("--confirm, --revoke and --reason need an officer's NAME")
        found = reviews.items(rt, actor)
        if as_json:
            emit_json([i.as_dict() for i in found])
            return
        for i in found:
            state = "disabled" if i.disabled else ("DUE" if i.due else "reviewed")
            last = f"{i.last_login_at:%Y-%m-%d}" if i.last_login_at else "never"
            seen = (f"{i.last_decision} {i.last_review_at:%Y-%m-%d} by {i.last_reviewer}"
                    if i.last_review_at else "never reviewed")
            granted = ", ".join(i.granted_by) or "-"
            echo(f"{i.name:<24} {i.role:<10} {state:<8} last login {last:<10}  granted by "
                 f"{granted}  {seen}")
        return
    if decision is None or reason is None:
        raise InputError("give --confirm or --revoke, and --reason")
    item = reviews.review(rt, actor, name, decision, reason)
    if as_json:
        emit_json(item.as_dict())
        return
    effect = "; disabled, sessions ended" if decision == "revoked" else ""
    echo(f"access of {name} ({item.role}) {decision}{effect}")


@officer.command()
@click.argument("name")
@click.pass_context
def disable(ctx: click.Context, name: str) -> None:
    """Disable NAME and end all its sessions and tokens at once."""
    actor = actor_of(ctx, "officers.manage")
    ended = officers.set_disabled(runtime_of(ctx), actor, name, True)
    echo(f"officer {name} disabled; {ended} session(s) ended")


@officer.command()
@click.argument("name")
@_REASON
@_CODE
@click.pass_context
def enable(ctx: click.Context, name: str, reason: str, code: str | None) -> None:
    """Enable NAME again (four-eyes), or clear the lockout of an officer who is only
    locked out after failed logins (at once)."""
    actor = actor_of(ctx, "officers.manage")
    done = officers.request_enable(runtime_of(ctx), actor, name, _code(code), reason)
    _granted(done, f"officer {name}'s lockout cleared", f"enable officer {name}")


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
    echo("password changed")


@officer.command("totp-reset")
@click.argument("name")
@_REASON
@_CODE
@click.pass_context
def totp_reset(ctx: click.Context, name: str, reason: str, code: str | None) -> None:
    """A new authenticator for NAME, shown to you once to hand over; it replaces the old
    one when a second senior or admin approves."""
    actor = actor_of(ctx, "officers.manage")
    done = officers.request_totp_reset(runtime_of(ctx), actor, name, reason, _code(code))
    _granted(done, "", f"put {name}'s new authenticator in force")


@officer.command("password-reset")
@click.argument("name")
@_REASON
@_CODE
@click.pass_context
def password_reset(ctx: click.Context, name: str, reason: str, code: str | None) -> None:
    """A new password for NAME, chosen by you to hand over; it replaces the old one when
    a second senior or admin approves (NAME then changes it with `officer passwd`)."""
    actor = actor_of(ctx, "officers.manage")
    password = prompt_secret("New password for " + name)
    if password != prompt_secret("Repeat it"):
        raise InputError("the passwords differ")
    done = officers.request_password_reset(runtime_of(ctx), actor, name, reason, _code(code),
                                           password)
    _granted(done, "", f"put {name}'s new password in force")


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
    echo(f"token {token_id} (store it now, it is not shown again):", err=True)
    echo(value)


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke token TOKEN_ID."""
    actor = actor_of(ctx, "officers.manage")
    rt = runtime_of(ctx)
    parsed = ids.token_id(rt, token_id)
    sessions.revoke_token(rt, actor, parsed)
    echo(f"token {parsed} revoked")


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
    echo(f"logged in as {actor.name} ({actor.role}); session file {path}")


@click.command()
@click.pass_context
def logout(ctx: click.Context) -> None:
    """End your session."""
    settings = settings_of(ctx)
    token = current_token(settings)
    path = session_file(settings)
    ended = sessions.logout(runtime_of(ctx), token) if token else False
    path.unlink(missing_ok=True)
    echo("logged out" if ended else "no live session")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def whoami(ctx: click.Context, as_json: bool) -> None:
    """The officer of the current session."""
    actor = authenticated(ctx)
    if as_json:
        emit_json({"name": actor.name, "role": actor.role, "session": actor.session_id})
    else:
        echo(f"{actor.name} ({actor.role})")
