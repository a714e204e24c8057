"""`polysec twofa status | reset | list | show | approve | deny`: client 2FA resets."""

from __future__ import annotations

from functools import partial

import click

from polysec_tui.commands.common import (
    actor_of,
    echo,
    echo_record,
    emit_json,
    prompt_secret,
    runtime_of,
)
from polysec_tui.services import ids
from polysec_tui.services.clients import twofa as service
from polysec_tui.text import fmt_minute, visible

_when = partial(fmt_minute, utc=True)


@click.group()
def twofa() -> None:
    """Client 2FA: status and the four-eyes reset (identity proofing, withdrawal hold)."""


@twofa.command()
@click.argument("account")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, account: str, as_json: bool) -> None:
    """Enrolment state of ACCOUNT (id or exact email); never the secret."""
    view = service.status(runtime_of(ctx), actor_of(ctx, "read"), account)
    if as_json:
        emit_json(view.as_dict())
        return
    echo(f"account            {visible(view.account)}")
    echo(f"enrolled           {'yes' if view.enrolled else 'no'}")
    echo(f"enrolled at        {_when(view.enrolled_at)}")
    echo(f"last used          {_when(view.last_used_at)}")
    echo(f"re-enrolment       {'required' if view.reenrolment_required else 'no'}")
    echo(f"withdrawal hold    {'until ' + _when(view.hold_until) if view.hold_until else 'none'}")
    echo(f"pending request    {view.pending_request or 'none'}")
    for event in view.events:
        echo(f"  {_when(event['at'])}  {event['kind']:<12} ip {visible(event['ip'] or '-')}")


def _print_risk(risk: service.RiskContext) -> None:
    echo(f"risk context: {risk.summary()}")
    for a in risk.anomalies:
        echo(f"  anomaly     {_when(a['at'])}  {a['kind']} ({a['severity']})")
    for w in risk.pending_withdrawals:
        echo(f"  withdrawal  {_when(w['requested_at'])}  {w['amount']} {visible(w['asset'])} "
             f"{w['status']}")
    for c in risk.security_changes:
        echo(f"  security    {_when(c['at'])}  {c['kind']} ip {visible(c['ip'] or '-')}")
    for h in risk.active_holds:
        echo(f"  hold        {h['kind']} until {_when(h['expires_at'])}")


@twofa.command()
@click.argument("account")
@click.option("--reason", required=True, help="Why the client needs a reset.")
@click.option("--evidence", required=True,
              help="How identity was verified (case notes; no document contents).")
@click.option("--id-document", metavar="REF",
              help="ID document matched the KYC record: the check's reference.")
@click.option("--liveness", metavar="REF", help="Selfie / liveness check reference.")
@click.option("--history-questions", is_flag=True,
              help="The client answered the account history questions correctly.")
@click.option("--kyc-reference", metavar="REF", help="KYC record reference.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reset(ctx: click.Context, account: str, reason: str, evidence: str,
          id_document: str | None, liveness: str | None, history_questions: bool,
          kyc_reference: str | None, as_json: bool) -> None:
    """Open a 2FA reset request for ACCOUNT (analyst or above); a different senior
    officer approves it. Needs at least [twofa] min_proofs identity proofs (default 2)."""
    proof = service.Proof(id_document=id_document, liveness=liveness,
                          history_questions="passed" if history_questions else None,
                          kyc_reference=kyc_reference)
    opened = service.request_reset(runtime_of(ctx), actor_of(ctx, "twofa.request"), account,
                                   reason, evidence, proof)
    if as_json:
        emit_json({"request": opened.request.as_dict(), "risk": opened.risk.as_dict()})
        return
    echo(f"request {opened.request.id} opened for account "
         f"{visible(opened.request.account)}; "
         f"expires {_when(opened.request.expires_at)}")
    _print_risk(opened.risk)
    echo("a different officer (senior or above) must approve: "
         f"polysec twofa approve {opened.request.id}")


@twofa.command("list")
@click.option("--pending", is_flag=True, help="Only requests that can still be decided.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, pending: bool, as_json: bool) -> None:
    """2FA reset requests, newest first."""
    views = service.list_requests(runtime_of(ctx), actor_of(ctx, "read"), pending_only=pending)
    if as_json:
        emit_json([v.as_dict() for v in views])
        return
    if not views:
        echo("no requests")
    for v in views:
        echo(f"{v.id}  {v.status:<8} {visible(v.account):<20} by "
             f"{v.requester:<16} "
             f"expires {v.expires_at:%Y-%m-%d %H:%M}  proofs "
             f"{','.join(sorted(v.proofs))}")


@twofa.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, request_id: str, as_json: bool) -> None:
    """One request with its evidence, the risk counts when it was opened and the
    account's risk context now."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "read")
    view = service.get_request(rt, actor, ids.request_id(rt, request_id))
    risk = service.risk_context(rt, actor, view.account)
    if as_json:
        emit_json({**view.as_dict(), "risk_now": risk.as_dict()})
        return
    echo_record(view.as_dict())
    _print_risk(risk)


@twofa.command()
@click.argument("request_id")
@click.option("--code", help="A fresh authenticator code (asked if not given).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def approve(ctx: click.Context, request_id: str, code: str | None, as_json: bool) -> None:
    """Approve and execute REQUEST_ID (senior or above; never your own; exit 4 if someone
    decided first)."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "approve")
    request = ids.request_id(rt, request_id)
    service.check(rt, actor, request, approving=True)  # refusals before the code
    done = service.approve(rt, actor, request, prompt_secret("Authenticator code", code))
    if as_json:
        emit_json({"request": done.request_id, **done.result})
        return
    r = done.result
    echo(f"request {done.request_id} approved: 2FA of account "
         f"{visible(r['account'])} reset; "
         f"{r['sessions_revoked']} client sessions revoked; withdrawals held until "
         f"{r['hold_until']}; the client re-enrols at the next login")


@twofa.command()
@click.argument("request_id")
@click.option("--reason", required=True)
@click.option("--code", help="A fresh authenticator code (asked if not given).")
@click.pass_context
def deny(ctx: click.Context, request_id: str, reason: str, code: str | None) -> None:
    """Deny REQUEST_ID with a reason (senior or above; never your own)."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "approve")
    request = ids.request_id(rt, request_id)
    service.check(rt, actor, request, approving=False)  # refusals before the code
    service.deny(rt, actor, request, reason, prompt_secret("Authenticator code", code))
    echo(f"request {request} denied")
