"""`polysec export status|dead|retry`: the SIEM export's health and its dead letters.

The export itself runs inside `polysec watch` (services/monitoring/export.py); these
commands read how far each destination has got and send again what a webhook receiver
did not take. docs/siem.md.
"""

from __future__ import annotations

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.errors import CheckFailed
from polysec_tui.services.monitoring import export as service
from polysec_tui.text import printable


@click.group()
def export() -> None:
    """The SIEM export: officer audit entries, alerts and the watcher's health, streamed
    by `polysec watch` to the [export] destinations (RFC 5424 syslog, signed webhooks).
    See docs/siem.md."""


@export.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """How far each destination has got: events waiting, the last delivery, the last
    error, dead letters. Exit 1 when a destination has events waiting with an error or
    dead letters (for a monitoring probe)."""
    rt = runtime_of(ctx)
    config = service.ExportConfig.from_settings(rt.settings)
    doc = service.status(rt, actor_of(ctx, "auditlog.read"), config)
    if as_json:
        emit_json(doc)
    else:
        if not doc["destinations"]:
            echo("no export destinations in [export] (docs/siem.md)")
        echo(f"audit entries not yet in the outbox: {doc['audit_waiting']}")
        for d in doc["destinations"]:
            state = ("failing: " + printable(d["last_error"]) if d["last_error"] and d["waiting"]
                     else "ok")
            echo(f"{d['name']}  {d['where']}  waiting {d['waiting']}  "
                 f"last delivery {d['delivered_at'] or 'never'}  dead letters "
                 f"{d['dead_letters']}  {state}")
    failing = [d["name"] for d in doc["destinations"]
               if (d["waiting"] and d["last_error"]) or d["dead_letters"]]
    if failing:
        raise CheckFailed(f"export failing or with dead letters: {', '.join(failing)}")


@export.command()
@click.option("--destination", help="Only this destination's (e.g. webhook.soc).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def dead(ctx: click.Context, destination: str | None, as_json: bool) -> None:
    """Events a webhook receiver did not take after every retry, oldest first."""
    rt = runtime_of(ctx)
    found = service.dead_letters(rt, actor_of(ctx, "auditlog.read"), destination)
    if as_json:
        emit_json([d.as_dict() for d in found])
        return
    if not found:
        echo("no dead letters")
    for d in found:
        echo(f"{d.id}  {d.destination}  event {d.event_id} ({d.type}, {d.at:%Y-%m-%d %H:%M:%S})"
             f"  {d.attempts} attempts, last {d.failed_at:%Y-%m-%d %H:%M:%S}: "
             f"{printable(d.error)}")


@export.command()
@click.option("--destination", help="Only this destination's (e.g. webhook.soc).")
@click.pass_context
def retry(ctx: click.Context, destination: str | None) -> None:
    """Send the dead letters again, oldest first (audited). Each one delivered is
    removed; exit 1 when some still fail."""
    rt = runtime_of(ctx)
    config = service.ExportConfig.from_settings(rt.settings)
    delivered, failed = service.retry(rt, actor_of(ctx, "export.manage"), config,
                                      destination=destination)
    echo(f"delivered {delivered}, still failing {failed}")
    if failed:
        raise CheckFailed(f"{failed} dead letter(s) still not delivered")
