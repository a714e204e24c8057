"""`polysec rules report`: each rule and detector with its hits, holds and outcomes."""

from __future__ import annotations

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.services import outcomes as service
from polysec_tui.services.logins.anomalies import parse_since


@click.group()
def rules() -> None:
    """How well the screening rules and login detectors do, from the outcomes officers
    record when they decide a withdrawal or acknowledge an alert (docs/screening.md)."""


@rules.command()
@click.option("--since", default="30d", show_default=True,
              help="The period: 30d, 24h, 2w, or an ISO 8601 time with a zone.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def report(ctx: click.Context, since: str, as_json: bool) -> None:
    """Hits, holds, confirmed fraud, false positives, benign and precision per rule."""
    rt = runtime_of(ctx)
    start = parse_since(since, rt.clock())
    figures = service.report(rt, actor_of(ctx, "read"), start)
    if as_json:
        emit_json({"since": start, "rules": [f.as_dict() for f in figures]})
        return
    echo(f"since {start:%Y-%m-%d %H:%M} UTC; precision = confirmed / decided")
    width = max(len(f.rule) for f in figures)
    echo(f"{'rule':<{width}}  {'hits':>7}  {'holds':>6}  {'confirmed':>9}  {'false pos':>9}"
         f"  {'benign':>6}  {'precision':>9}")
    for f in figures:
        holds = "" if f.holds is None else f"{f.holds:,}"
        precision = "" if f.precision is None else f"{f.precision:.0%}"
        echo(f"{f.rule:<{width}}  {f.hits:>7,}  {holds:>6}  {f.confirmed:>9,}  "
             f"{f.false_positives:>9,}  {f.benign:>6,}  {precision:>9}")
