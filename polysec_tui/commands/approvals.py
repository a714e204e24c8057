"""`polysec approvals list | show | approve | deny`: the four-eyes queue."""

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
from polysec_tui.services import four_eyes as service
from polysec_tui.services import ids
from polysec_tui.text import visible


@click.group()
def approvals() -> None:
    """Four-eyes requests: one officer asks, a different, senior enough one decides."""


@approvals.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include decided and expired requests.")
@click.option("--kind", type=click.Choice(sorted(service.KINDS)), help="Only this kind.")
@click.option("--mine", is_flag=True, help="Only the requests you made (and their outcome).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, show_all: bool, kind: str | None, mine: bool,
          as_json: bool) -> None:
    """Pending requests of every kind, newest first: the approvals inbox. Yours are
    listed too (marked "yours"), but another officer decides them."""
    actor = actor_of(ctx, "read")
    views = service.list_requests(runtime_of(ctx), actor, pending_only=not show_all,
                                  kind=kind, mine=mine)
    if as_json:
        emit_json([v.as_dict() for v in views])
        return
    if not views:
        echo("no requests")
    for v in views:
        who = "yours" if v.requester_id == actor.officer_id else visible(v.requester)
        echo(f"{v.id}  {v.status:<8} {v.kind:<20} by {who:<16} "
             f"expires {v.expires_at:%Y-%m-%d %H:%M}  {visible(v.description)}")


@approvals.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, request_id: str, as_json: bool) -> None:
    """One request with its reason."""
    actor = actor_of(ctx, "read")
    rt = runtime_of(ctx)
    view = service.get_request(rt, actor, ids.request_id(rt, request_id))
    if as_json:
        emit_json(view.as_dict())
        return
    echo_record(view.as_dict(), skip=("subject", "evidence", "requester_id"))
    if view.evidence:  # the kind's own evidence, under its heading
        echo("evidence:")
        width = max(len(label) for label, _text in view.evidence) + 2
        for label, text in view.evidence:
            echo(f"  {visible(label):<{width}}{visible(text)}")


@approvals.command()
@click.argument("request_id")
@click.option("--code", help="A fresh authenticator code (asked if not given).")
@click.pass_context
def approve(ctx: click.Context, request_id: str, code: str | None) -> None:
    """Approve and execute REQUEST_ID (never your own; exit 4 if someone decided first)."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "approve")
    request = ids.request_id(rt, request_id)
    service.check(rt, actor, request, approving=True)  # refusals before the code
    done = service.approve(rt, actor, request, prompt_secret("Authenticator code", code))
    echo(f"request {done.request_id} approved and executed ({done.kind})")


@approvals.command()
@click.argument("request_id")
@click.option("--reason", required=True)
@click.option("--code", help="A fresh authenticator code (asked if not given).")
@click.pass_context
def deny(ctx: click.Context, request_id: str, reason: str, code: str | None) -> None:
    """Deny REQUEST_ID with a reason."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "approve")
    request = ids.request_id(rt, request_id)
    service.check(rt, actor, request, approving=False)  # refusals before the code
    service.deny(rt, actor, request, reason, prompt_secret("Authenticator code", code))
    echo(f"request {request} denied")
