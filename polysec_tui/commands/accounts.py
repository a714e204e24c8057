"""`polysec accounts show ACCOUNT [--reveal FIELD --reason TEXT]`."""

from __future__ import annotations

import click

from polysec_tui.commands.common import actor_of, emit_json, runtime_of
from polysec_tui.services import accounts as service
from polysec_tui.services.accounts import PII_FIELDS


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
            click.echo(f"{reveal}: {value}")
        return
    actor = actor_of(ctx, "read")
    view = service.summary(rt, actor, account)
    if as_json:
        emit_json(view.as_dict())
        return
    for key, value in view.as_dict().items():
        if key == "balances":
            value = ", ".join(f"{a} {format(v, 'f')}" for a, v in sorted(value.items())) or "-"
        click.echo(f"{key:<14} {value if value is not None else '-'}")
