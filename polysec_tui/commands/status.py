"""`polysec status [--json]`: the dashboard's figures for scripts and a quick look.

Plain text lines (through `echo`) rather than a rich table: the output is greppable,
never coloured (so NO_COLOR and pipes need no special case) and imports nothing heavy.
Every piece of text from the platform has been through `printable`, so no escape
sequence from a user agent reaches the officer's terminal.
"""

from __future__ import annotations

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.services.monitoring.dashboard import DashboardService, DashboardSummary
from polysec_tui.services.monitoring.watcher import describe
from polysec_tui.text import printable


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--events", "newest", type=click.IntRange(0, 500), default=12, show_default=True,
              help="How many of the newest events to list.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, newest: int) -> None:
    """Accounts and 2FA coverage, logins of the last 24 hours and the failed-login rate of
    the last hour, withdrawals waiting for a decision, login anomalies, pending four-eyes
    requests, the last backup and audit run, open incidents, the detector service
    (`polysec watch`: running, lag, last error), unacknowledged alerts, and the newest
    failed logins, security events and withdrawals.

    Needs a logged-in officer (`polysec login`, or POLYSEC_TOKEN); exit 3 otherwise.
    """
    rt = runtime_of(ctx)  # first: the officer is authenticated on this runtime (and clock)
    actor = actor_of(ctx, "read")
    summary = DashboardService(rt, actor, newest=newest).summary()
    if as_json:
        emit_json(summary.as_dict())
        return
    for line in render_text(summary):
        echo(line)


def render_text(s: DashboardSummary) -> list[str]:
    coverage = "n/a" if s.coverage_pct is None else f"{s.coverage_pct:.1f} %"
    lines = [
        f"database      {printable(s.database)}{'  [DEMO]' if s.demo else ''}",
        f"as of         {s.as_of:%Y-%m-%d %H:%M:%S} UTC",
        f"accounts      {s.accounts:,}, with 2FA {s.accounts_2fa:,} ({coverage})",
        f"logins 24 h   {s.logins_ok_24h:,} ok, {s.logins_failed_24h:,} failed "
        f"from {s.failing_ips_24h:,} distinct IP(s)",
        f"withdrawals   {s.withdrawals_pending:,} pending, {s.withdrawals_held:,} held"
        + (f", {s.withdrawals_late:,} past the review SLA" if s.withdrawals_late else ""),
        f"failed/hour   {s.logins_failed_1h:,} in the last hour "
        f"(24 h average {s.failed_per_hour_24h:,.1f}){'  HIGH' if s.failed_rate_alarming else ''}",
        f"anomalies     {s.anomalies_24h:,} in 24 h, {s.anomalies_high_24h:,} high or critical",
        f"four-eyes     {s.approvals_pending:,} pending"
        + (f", oldest since {s.approvals_oldest_at:%Y-%m-%d %H:%M} UTC"
           if s.approvals_oldest_at else ""),
        f"last backup   {_backup_text(s)}",
        f"last drill    {_drill_text(s)}",
        f"last audit    {_audit_text(s)}",
        f"incidents     {s.incidents_open:,} open or contained",
        f"alerts        {len(s.alerts):,} unacknowledged"
        + (f", {s.alerts_late:,} past their SLA" if s.alerts_late else ""),
    ]
    if s.watcher is not None:
        lines.insert(-1, f"monitoring    {printable(describe(s.watcher, s.as_of))}")
    for alert in s.alerts:
        who = f" {alert.account}" if alert.account else ""
        lines.append(f"  {alert.at:%Y-%m-%d %H:%M:%S}  {alert.key}  {alert.title}{who}  "
                     f"{alert.detail}")
    if s.events:
        lines += ["", "newest events (UTC)"]
        width = max(len(e.account) for e in s.events)
        for e in s.events:
            lines.append(
                f"{e.at:%Y-%m-%d %H:%M:%S}  {e.label:<20}  {e.account:<{width}}  {e.detail}"
            )
    return lines


def _backup_text(s: DashboardSummary) -> str:
    b = s.backup
    if b is None:
        return "none"
    flags = ", ".join(["verified" if b.verified else "not verified",
                       "shipped" if b.shipped else "not shipped"])
    return (f"{b.created_at:%Y-%m-%d %H:%M} UTC ({b.age_hours(s.as_of):,.1f} h ago), "
            f"{b.status}, {flags}")


def _drill_text(s: DashboardSummary) -> str:
    d = s.drill
    if d is None:
        return "never (`polysec backup drill`)"
    return (f"{d.started_at:%Y-%m-%d %H:%M} UTC ({d.age_hours(s.as_of):,.1f} h ago), "
            f"{'passed' if d.result == 'pass' else 'FAILED'} in {d.total_seconds:,.1f} s")


def _audit_text(s: DashboardSummary) -> str:
    a = s.audit
    if a is None:
        return "never run"
    result = a.result or "running"
    failed = f", {a.failed} check(s) failed" if a.failed else ""
    return f"run {a.run_id} at {a.started_at:%Y-%m-%d %H:%M} UTC: {result}{failed}"
