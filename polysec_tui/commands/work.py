"""`polysec work`: the officer's own work in one place."""

from __future__ import annotations

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.services import work as service
from polysec_tui.text import fmt_amount, printable


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def work(ctx: click.Context, as_json: bool) -> None:
    """What you claimed (with its SLA clock), the requests you may decide, your own
    requests of the last 7 days, and the team's work past its SLA."""
    rt = runtime_of(ctx)
    mine = service.my_work(rt, actor_of(ctx, "read"))
    if as_json:
        emit_json(mine.as_dict())
        return
    echo(f"{mine.officer} at {mine.as_of:%Y-%m-%d %H:%M} UTC; team: "
         f"{mine.withdrawals_late:,} withdrawal(s) past the {mine.sla_hours:g} h review SLA, "
         f"{mine.alerts_late:,} alert(s) past their SLA")
    echo(f"claimed by you: {len(mine.claimed)}")
    for i in mine.claimed:
        late = "LATE" if mine.due(i) < mine.as_of else "due "
        echo(f"  {late} {mine.due(i):%m-%d %H:%M}  {printable(i.external_id):<24} "
             f"{fmt_amount(i.amount):>16} {printable(i.asset):<6} {i.status}")
    echo(f"waiting for your decision: {len(mine.to_decide)}")
    for r in mine.to_decide:
        echo(f"  {r.id}  {r.kind:<20} by {printable(r.requester):<12} "
             f"{printable(r.description)}")
    echo(f"your requests (7 days): {len(mine.requested)}")
    for r in mine.requested:
        by = f" by {printable(r.decided_by)}" if r.decided_by else ""
        echo(f"  {r.id}  {r.status:<8}{by:<14} {printable(r.description)}")
