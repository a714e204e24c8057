"""`polysec alerts list|ack`: the dashboard's high-severity alerts from a script.

The same alerts as the console's alert bar (`services.alerts`); acknowledging one is the
same audited action as ``enter`` in the console's alerts list.
"""

from __future__ import annotations

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.services.monitoring import alerts as service
from polysec_tui.services.outcomes import OUTCOMES
from polysec_tui.text import printable


@click.group()
def alerts() -> None:
    """Alerts nobody has acknowledged yet, one per incident of activity: an account's
    high or critical login anomalies of the last 24 hours and its held withdrawals above
    the four-eyes limit (account:<uuid>), a stuffing or spraying campaign of one source
    (source:<ip or ASn>), a failed audit run of the last 24 hours (audit:<id>). See
    docs/live-dashboard.md."""


@alerts.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """Unacknowledged alerts, newest first (exit 0 even when there are some)."""
    rt = runtime_of(ctx)
    found = service.list_alerts(rt, actor_of(ctx, "read"))
    if as_json:
        emit_json([a.as_dict() for a in found])
        return
    if not found:
        echo("no unacknowledged alerts")
    width = max(len(a.key) for a in found) if found else 0
    for a in found:
        who = f"  account {a.account}" if a.account else ""
        echo(f"{a.at:%Y-%m-%d %H:%M:%S}  {a.key:<{width}}  {a.severity:<8}  {a.title}{who}")
        echo(f"{'':19}  {'':<{width}}  {'':<8}  {a.detail}")


@alerts.command()
@click.argument("keys", nargs=-1, required=True)
@click.option("--outcome", type=click.Choice(OUTCOMES), required=True,
              help="Was it right: confirmed fraud, a false positive, or benign (real but "
                   "harmless; say why in --note). Feeds `polysec rules report`.")
@click.option("--note", help="Why, or what was done (the same for every alert; audited).")
@click.pass_context
def ack(ctx: click.Context, keys: tuple[str, ...], outcome: str, note: str | None) -> None:
    """Acknowledge the alerts KEYS (e.g. account:<uuid> source:203.0.113.5), each as far
    as it has grown now, with its outcome (audited). Every failure is listed, and the
    exit code is the first failure's: 4 acknowledged by another officer first, 2 not an
    alert."""
    rt = runtime_of(ctx)
    results = service.acknowledge_many(rt, actor_of(ctx, "review"),
                                       [(key, None) for key in keys], note, outcome=outcome)
    for key, error in results:
        echo(f"acknowledged {key}" if error is None else f"not acknowledged {key}: {error}")
    failures = [error for _key, error in results if error is not None]
    if failures:
        # The exit code of the first failure; every failure is listed above.
        raise type(failures[0])(f"{len(failures)} of {len(results)} alert(s) not "
                                "acknowledged")


@alerts.command()
@click.argument("key")
@click.option("--minutes", type=click.IntRange(1, service.MAX_SNOOZE_MINUTES), default=60,
              show_default=True, help="How long (at most a day).")
@click.option("--rule", help="Only this detector on the subject (e.g. new_country).")
@click.option("--reason", required=True, help="Why (audited, shown with the snooze).")
@click.pass_context
def snooze(ctx: click.Context, key: str, minutes: int, rule: str | None, reason: str) -> None:
    """Silence the alert KEY (an account or a source) for a while; it comes back when
    the time is up, or at once if its severity rises. Audited."""
    rt = runtime_of(ctx)
    view = service.snooze(rt, actor_of(ctx, "review"), key, minutes, reason, rule=rule)
    echo(f"snoozed {view.subject}{' (' + view.rule + ')' if view.rule else ''} until "
         f"{view.until:%Y-%m-%d %H:%M} UTC")


@alerts.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def snoozes(ctx: click.Context, as_json: bool) -> None:
    """The snoozes in force, soonest to end first."""
    rt = runtime_of(ctx)
    found = service.list_snoozes(rt, actor_of(ctx, "read"))
    if as_json:
        emit_json([s.as_dict() for s in found])
        return
    if not found:
        echo("no snoozes in force")
    for s in found:
        echo(f"until {s.until:%Y-%m-%d %H:%M}  {s.subject}"
             f"{' (' + s.rule + ')' if s.rule else ''}  by {printable(s.officer)}: "
             f"{printable(s.reason)}")
