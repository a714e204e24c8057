"""`polysec logins analyze|anomalies|timeline`."""

from __future__ import annotations

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.services.logins import anomalies as service
from polysec_tui.services.logins import timeline as timelines
from polysec_tui.text import printable, visible


@click.group()
def logins() -> None:
    """Login anomalies and account timelines (docs/anomalies.md)."""


@logins.command()
@click.option("--full", is_flag=True, help="Forget the checkpoint and analyse every login again.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def analyze(ctx: click.Context, full: bool, as_json: bool) -> None:
    """Analyse the logins newer than the last run (safe from cron and alongside the TUI).

    Needs analyst, senior, admin or an automation token. Audited.
    """
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "logins.analyze")
    report = service.analyze(rt, actor, full=full)
    if as_json:
        emit_json(report.as_dict())
        return
    found = ", ".join(f"{k} {n}" for k, n in sorted(report.new_anomalies.items())) or "none"
    echo(
        f"analysed {report.logins} login(s) (ids {report.from_login_id + 1}.."
        f"{report.to_login_id}{', full run' if full else ''}) in {report.seconds:.1f} s; "
        f"new anomalies: {found}"
    )


@logins.command()
@click.option("--since", default="24h", show_default=True,
              help="30m, 24h, 7d, or an ISO 8601 time with zone.")
@click.option("--kind", type=click.Choice(service.KINDS))
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def anomalies(ctx: click.Context, since: str, kind: str | None, limit: int,
              as_json: bool) -> None:
    """List anomalies found on logins since a time, newest first."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "read")
    found = service.list_anomalies(rt, actor, since=service.parse_since(since, rt.clock()),
                                   kind=kind, limit=limit)
    if as_json:
        emit_json([a.as_dict() for a in found])
        return
    if not found:
        echo("no anomalies")
        return
    for a in found:
        echo(
            f"{a.at:%Y-%m-%d %H:%M:%S} {a.severity:<8} {a.kind:<22} "
            f"{visible(a.account)} login {visible(a.login)}: "
            f"{printable(a.explanation)}"
        )


@logins.command()
@click.argument("account")
@click.option("--limit", type=click.IntRange(1, timelines.MAX_LIMIT),
              default=timelines.DEFAULT_LIMIT, show_default=True,
              help="Newest events shown.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def timeline(ctx: click.Context, account: str, limit: int, as_json: bool) -> None:
    """One account's story, oldest first: logins with their anomalies, security events,
    withdrawals and decisions, 2FA resets and officer actions (ACCOUNT: platform id or
    exact e-mail)."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "read")
    view = timelines.account_timeline(rt, actor, account, limit=limit)
    if as_json:
        emit_json(view.as_dict())
        return
    echo(f"account {visible(view.account)}  {visible(view.email)}  status "
         f"{view.status}  country {view.country or '-'}")
    if view.truncated:
        echo(f"(the newest {limit} events; --limit shows more)")
    for e in view.events:
        echo(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.type:<15} {printable(e.summary)}")
        for a in e.anomalies:
            echo(f"{'':21}! {a['severity']} {a['kind']}: {printable(a['explanation'])}")
