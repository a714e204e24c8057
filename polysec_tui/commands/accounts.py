"""`polysec accounts`: show (PII masked), freeze, unfreeze (four-eyes), lockdown, report.

ACCOUNT is the platform's account id or an exact email (found through the blind index).
"""

from __future__ import annotations

import click

from polysec_tui.commands.common import (
    actor_of,
    echo,
    echo_record,
    emit_json,
    prompt_secret,
    runtime_of,
)
from polysec_tui.services.clients import accounts as service
from polysec_tui.services.clients.accounts import PII_FIELDS
from polysec_tui.text import visible


@click.group()
def accounts() -> None:
    """Client accounts (PII masked; revealing a field is audited)."""


@accounts.command()
@click.argument("account")
@click.option("--reveal", type=click.Choice(PII_FIELDS),
              help="Show this field in full (senior or above; audited).")
@click.option("--reason", help="Why the field must be revealed (required with --reveal).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, account: str, reveal: str | None, reason: str | None,
         as_json: bool) -> None:
    """Show an account with its PII masked (ACCOUNT: platform id or exact email)."""
    rt = runtime_of(ctx)
    if reveal:
        actor = actor_of(ctx, "pii.reveal")
        value = service.reveal(rt, actor, account, reveal, reason or "")
        if as_json:
            emit_json({"account": account, "field": reveal, "value": value})
        else:
            echo(f"{reveal}: {visible(value)}")
        return
    actor = actor_of(ctx, "read")
    view = service.summary(rt, actor, account)
    if as_json:
        emit_json(view.as_dict())
        return
    doc = view.as_dict()
    doc["balances"] = {a: format(v, "f") for a, v in sorted(view.balances.items())}
    echo_record(doc)


@accounts.command()
@click.argument("account")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.pass_context
def freeze(ctx: click.Context, account: str, reason: str) -> None:
    """Block the account's withdrawals (screening: account_frozen) until unfrozen."""
    from polysec_tui.services.clients import protection

    actor = actor_of(ctx, "review")
    placed = protection.freeze(runtime_of(ctx), actor, account, reason)
    echo(f"account {visible(account)} {'frozen' if placed else 'was already frozen'}")


@accounts.command()
@click.argument("account")
@click.option("--reason", required=True, help="Why the freeze can end.")
@click.pass_context
def unfreeze(ctx: click.Context, account: str, reason: str) -> None:
    """Ask for the freeze to end: a different senior officer approves (four-eyes)."""
    from polysec_tui.services.clients import protection

    actor = actor_of(ctx, "review")
    request = protection.request_unfreeze(runtime_of(ctx), actor, account, reason)
    echo(f"request {request} opened; another senior officer runs: "
         f"polysec approvals approve {request}")


@accounts.command()
@click.argument("account")
@click.option("--reason", required=True, help="Why (sent to the incident and audit log).")
@click.option("--code", help="A fresh authenticator code (asked if not given).")
@click.option("--dry-run", is_flag=True, help="Only list what the lockdown would do.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def lockdown(ctx: click.Context, account: str, reason: str, code: str | None, dry_run: bool,
             as_json: bool) -> None:
    """Confirmed takeover: in one step revoke every session and API key, require a
    password reset, freeze withdrawals, reject the open ones, notify the client and open
    an incident. Running it again changes nothing further."""
    from polysec_tui.services.clients import protection

    actor = actor_of(ctx, "review")
    rt = runtime_of(ctx)
    if dry_run:
        plan = protection.lockdown_plan(rt, actor, account)
        if as_json:
            emit_json(plan)
            return
        echo(f"lockdown of {visible(plan['account'])} would: revoke "
             f"{plan['sessions_to_revoke']} sessions and {plan['api_keys_to_revoke']} "
             f"API keys; reject {len(plan['withdrawals_to_reject'])} withdrawals "
             f"({', '.join(map(visible, plan['withdrawals_to_reject'])) or 'none'}); "
             f"{'freeze withdrawals; ' if plan['freeze'] else ''}require a password "
             "reset; notify the client; open an incident")
        return
    result = protection.lockdown(rt, actor, account, reason,
                                 prompt_secret("Authenticator code", code))
    if as_json:
        emit_json(result.to_dict())
        return
    if result.already_locked:
        echo(f"account {visible(result.account)} was already locked down (incident "
             f"{result.incident}); nothing changed")
        return
    echo(f"account {visible(result.account)} locked down: {result.sessions_revoked} sessions "
         f"and {result.api_keys_revoked} API keys revoked, "
         f"{len(result.withdrawals_rejected)} withdrawals rejected; incident "
         f"{result.incident}")


@accounts.command()
@click.argument("account")
@click.option("--via", required=True, type=click.Choice(["phone", "email", "ticket"]),
              help="How the client reported it.")
@click.option("--text", required=True, help="What the client said.")
@click.pass_context
def report(ctx: click.Context, account: str, via: str, text: str) -> None:
    """Record a client's report of unauthorised use: opens an incident."""
    from polysec_tui.services.clients import protection

    actor = actor_of(ctx, "review")
    incident = protection.report(runtime_of(ctx), actor, account, via, text)
    echo(f"incident {incident} opened for account {visible(account)}")
