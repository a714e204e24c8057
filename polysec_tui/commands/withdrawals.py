"""`polysec withdrawals screen|list|show|claim|next|approve|reject|escalate|release|reassign`."""

from __future__ import annotations

from typing import Any

import click

from polysec_tui.commands.common import COUNT, OFFSET, actor_of, echo, emit_json, runtime_of
from polysec_tui.services.outcomes import OUTCOMES
from polysec_tui.services.withdrawals import review as service
from polysec_tui.services.withdrawals import screening
from polysec_tui.text import fmt_amount, fmt_money, printable, visible


@click.group()
def withdrawals() -> None:
    """Withdrawal screening and the review queue (docs/screening.md).

    A decision that lost a race (another officer decided first) exits with 4 and names
    that officer; a refused one (permissions, an active hold on the account, a
    blocklisted destination) exits with 3.
    """


@withdrawals.command()
@click.option("--limit", type=COUNT, help="Screen at most this many.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def screen(ctx: click.Context, limit: int | None, as_json: bool) -> None:
    """Score every unscreened withdrawal; hold those at or above the threshold.

    Idempotent (a screened withdrawal is never screened again) and safe to run from cron
    while officers work. Needs analyst, senior, admin or an automation token. Audited.
    """
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "withdrawals.screen")
    report = screening.screen(rt, actor, limit=limit)
    if as_json:
        emit_json(report.as_dict())
        return
    found = ", ".join(f"{k} {n}" for k, n in sorted(report.hits.items())) or "none"
    echo(f"screened {report.screened} withdrawal(s) in {report.seconds:.1f} s; "
         f"held {report.held}; rule hits: {found}")


@withdrawals.command("list")
@click.option("--status", default="open", show_default=True,
              type=click.Choice(("open", *service.STATUSES)),
              help="open = held, escalated and in_review (held first).")
@click.option("--asset", help="Only this asset.")
@click.option("--rule", type=click.Choice(screening.RULES),
              help="Only withdrawals this rule flagged.")
@click.option("--search", help="Only those whose id, account or address begins with this, "
              "or whose asset, rule or claiming officer it is (the console's / filter).")
@click.option("--sort", type=click.Choice(service.SORTS), default="risk", show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=OFFSET, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, status: str, asset: str | None, rule: str | None,
          search: str | None, sort: str, limit: int, offset: int, as_json: bool) -> None:
    """One page of the review queue."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "read")
    page = service.list_queue(rt, actor, status=status, asset=asset, rule=rule, sort=sort,
                              offset=offset, limit=limit, search=search)
    if as_json:
        emit_json({"total": page.total, "total_capped": page.capped, "offset": page.offset,
                   "limit": page.limit, "currency": page.currency, "priced": page.priced,
                   "items": [i.as_dict() for i in page.items]})
        return
    if not page.items:
        echo("no withdrawals")
        return
    for i in page.items:
        risk = "-" if i.risk_score is None else f"{i.risk_score:.0f}"
        claimed = f" [{printable(i.claimed_by)}]" if i.claimed_by else ""
        echo(
            f"{visible(i.external_id):<20} {i.status:<10}{claimed} risk {risk:>4} "
            f"{i.requested_at:%Y-%m-%d %H:%M} {visible(i.account)} "
            f"{fmt_amount(i.amount)} {visible(i.asset)}{_value(i)} -> {visible(i.address)} "
            f"{','.join(i.rules)}"
        )
    shown = offset + len(page.items)
    echo(f"{offset + 1}-{shown} of {page.total}{'+' if page.capped else ''}")


def _value(item: service.QueueItem) -> str:
    """`` (~12,621.00 USD)`` when the platform feeds a price of the asset."""
    if item.value is None or item.currency is None:
        return ""
    return f" (~{fmt_money(item.value, item.currency)})"


@withdrawals.command()
@click.argument("withdrawal")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, withdrawal: str, as_json: bool) -> None:
    """One withdrawal with its rule hits, the account (masked) and its context."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "read")
    d = service.show(rt, actor, withdrawal)
    if as_json:
        emit_json(d.as_dict())
        return
    i = d.item
    risk = "-" if i.risk_score is None else f"{i.risk_score:.0f}"
    echo(f"withdrawal {visible(i.external_id)}: {i.status}, risk {risk}")
    echo(f"  {fmt_amount(i.amount)} {visible(i.asset)}{_value(i)} to {visible(i.address)} "
         f"requested {i.requested_at:%Y-%m-%d %H:%M:%S} UTC from {visible(d.ip)}")
    s = d.account_summary
    echo(f"  account {visible(s.external_id)} ({s.status}) email "
         f"{printable(s.masked.get('email'))}, 2FA {'on' if s.has_2fa else 'off'}")
    for f in d.flags:
        echo(f"  [{f.score:>3.0f}] {f.rule}: {printable(f.explanation)}")
    for h in d.active_holds:
        echo(f"  HOLD #{h.id} {h.kind}: {printable(h.reason)}")
    for dec in d.decisions:
        echo(f"  {dec.at:%Y-%m-%d %H:%M} {printable(dec.officer)} {dec.decision}"
             + (f": {printable(dec.note)}" if dec.note else ""))
    echo(f"  address used by {d.address_accounts} account(s)")


def _done(outcome: service.Outcome, as_json: bool) -> None:
    if as_json:
        emit_json(outcome.as_dict())
    elif outcome.approval_id is not None:
        echo(f"{outcome.summary()}: `polysec approvals approve {outcome.approval_id}`")
    else:
        echo(outcome.summary())


@withdrawals.command()
@click.argument("withdrawal")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def claim(ctx: click.Context, withdrawal: str, as_json: bool) -> None:
    """Take a held withdrawal into review (escalated ones: senior officers)."""
    rt = runtime_of(ctx)
    _done(service.claim(rt, actor_of(ctx, "review"), withdrawal), as_json)


def _outcome_options(default: str) -> Any:
    def wrap(command: Any) -> Any:
        command = click.option(
            "--outcome-reason",
            help="Why that outcome, e.g. \"client travelling\" (default: the note).")(command)
        return click.option(
            "--outcome", type=click.Choice(OUTCOMES), default=default, show_default=True,
            help="Was the hold right (feeds `polysec rules report`)")(command)
    return wrap


@withdrawals.command()
@click.argument("withdrawal")
@click.option("--note", required=True, help="Why (kept in the review record and audit log).")
@_outcome_options("false_positive")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def approve(ctx: click.Context, withdrawal: str, note: str, outcome: str,
            outcome_reason: str | None, as_json: bool) -> None:
    """Approve (above the asset's approval limit: opens a four-eyes request). The
    outcome is recorded with the final approval: by default the hold was a false
    positive; benign when the activity was real but harmless."""
    rt = runtime_of(ctx)
    _done(service.approve(rt, actor_of(ctx, "review"), withdrawal, note, outcome=outcome,
                          outcome_reason=outcome_reason), as_json)


@withdrawals.command()
@click.argument("withdrawal")
@click.option("--note", required=True, help="Why (kept in the review record and audit log).")
@_outcome_options("confirmed_fraud")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reject(ctx: click.Context, withdrawal: str, note: str, outcome: str,
           outcome_reason: str | None, as_json: bool) -> None:
    """Reject the withdrawal (the outcome: by default the hold caught fraud)."""
    rt = runtime_of(ctx)
    _done(service.reject(rt, actor_of(ctx, "review"), withdrawal, note, outcome=outcome,
                         outcome_reason=outcome_reason), as_json)


@withdrawals.command()
@click.argument("withdrawal")
@click.option("--note", required=True, help="Why (kept in the review record and audit log).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def escalate(ctx: click.Context, withdrawal: str, note: str, as_json: bool) -> None:
    """Hand the withdrawal to the senior officers."""
    rt = runtime_of(ctx)
    _done(service.escalate(rt, actor_of(ctx, "review"), withdrawal, note), as_json)


@withdrawals.command("next")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def next_(ctx: click.Context, as_json: bool) -> None:
    """Claim the most urgent unclaimed withdrawal (past its SLA first, then by risk).

    Exit 0 with "nothing to claim" (JSON: null) when nothing waits."""
    rt = runtime_of(ctx)
    outcome = service.claim_next(rt, actor_of(ctx, "review"))
    if outcome is None:
        if as_json:
            emit_json(None)
        else:
            echo("nothing to claim")
        return
    _done(outcome, as_json)


@withdrawals.command()
@click.argument("withdrawal")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def release(ctx: click.Context, withdrawal: str, as_json: bool) -> None:
    """Give your claim back: the withdrawal returns to the queue (held or escalated)."""
    rt = runtime_of(ctx)
    _done(service.release(rt, actor_of(ctx, "review"), withdrawal), as_json)


@withdrawals.command()
@click.argument("withdrawal")
@click.option("--to", "to", required=True, help="The officer who takes the claim over.")
@click.option("--reason", required=True, help="Why (kept in the review record and audit log).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reassign(ctx: click.Context, withdrawal: str, to: str, reason: str, as_json: bool) -> None:
    """Move a claim to another officer (senior officers; both officers are told)."""
    rt = runtime_of(ctx)
    _done(service.reassign(rt, actor_of(ctx, "review"), withdrawal, to, reason), as_json)
