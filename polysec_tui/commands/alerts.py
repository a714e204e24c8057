"""`polysec alerts list|ack`: the dashboard's high-severity alerts from a script.

The same alerts as the console's alert bar (`services.alerts`); acknowledging one is the
same audited action as ``enter`` in the console's alerts list.
"""

from __future__ import annotations

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.services.monitoring import alerts as service


@click.group()
def alerts() -> None:
    """High-severity events nobody has acknowledged yet: high or critical login
    anomalies of the last 24 hours, held withdrawals above their asset's four-eyes limit,
    failed audit runs of the last 24 hours. See docs/live-dashboard.md."""


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
    for a in found:
        who = f" {a.account}" if a.account else ""
        echo(f"{a.at:%Y-%m-%d %H:%M:%S}  {a.key:<18} {a.severity:<8} {a.title}{who}  "
             f"{a.detail}")


@alerts.command()
@click.argument("key")
@click.option("--note", help="Why, or what was done (stored and audited).")
@click.pass_context
def ack(ctx: click.Context, key: str, note: str | None) -> None:
    """Acknowledge the alert KEY (e.g. anomaly:42; audited). Exit 4 if another officer
    acknowledged it first."""
    rt = runtime_of(ctx)
    service.acknowledge(rt, actor_of(ctx, "review"), key, note)
    echo(f"acknowledged {key}")
