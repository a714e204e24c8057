"""`polysec incidents`: open, list, show, note, link, contain, close, export."""

from __future__ import annotations

from pathlib import Path

import click

from polysec_tui.commands.common import RECORD_ID, actor_of, echo, emit_json, runtime_of
from polysec_tui.errors import InputError
from polysec_tui.services.clients import casefile
from polysec_tui.services.clients import incidents as service
from polysec_tui.services.clients.accounts import PII_FIELDS
from polysec_tui.services.clients.incidents import LINK_KINDS, OUTCOMES, SEVERITIES


@click.group()
def incidents() -> None:
    """Incidents: cases that gather accounts, anomalies, withdrawals and notes."""


@incidents.command("open")
@click.option("--title", required=True)
@click.option("--severity", type=click.Choice(SEVERITIES), default="medium",
              show_default=True)
@click.option("--account", "accounts", multiple=True, metavar="ACCOUNT",
              help="An account the incident concerns (repeatable).")
@click.option("--note", help="A first note.")
@click.pass_context
def open_(ctx: click.Context, title: str, severity: str, accounts: tuple[str, ...],
          note: str | None) -> None:
    """Open an incident."""
    actor = actor_of(ctx, "review")
    incident = service.open_incident(runtime_of(ctx), actor, title=title, severity=severity,
                                     accounts=list(accounts), note=note)
    echo(f"incident {incident} opened")


@incidents.command("list")
@click.option("--state", type=click.Choice(["active", "open", "contained", "closed", "all"]),
              default="active", show_default=True, help="active = open or contained.")
@click.option("--account", help="Only incidents of this account.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def list_(ctx: click.Context, state: str, account: str | None, as_json: bool) -> None:
    """Incidents, newest first."""
    actor = actor_of(ctx, "read")
    found = service.list_incidents(runtime_of(ctx), actor,
                                   state=None if state == "all" else state, account=account)
    if as_json:
        emit_json([i.to_dict() for i in found])
        return
    for i in found:
        echo(f"{i.id:>5}  {i.opened_at:%Y-%m-%d %H:%M}  {i.severity:<8} "
             f"{i.state:<9} {i.owner or '-':<12} {','.join(i.accounts) or '-':<16} "
             f"{i.title}")


@incidents.command()
@click.argument("incident", type=RECORD_ID)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def show(ctx: click.Context, incident: int, as_json: bool) -> None:
    """One incident with its linked events as a single timeline."""
    actor = actor_of(ctx, "read")
    detail = service.show(runtime_of(ctx), actor, incident)
    if as_json:
        emit_json(detail.to_dict())
        return
    s = detail.summary
    echo(f"incident {s.id}: {s.title}\n  severity {s.severity}, {s.state}"
         f"{f' ({s.outcome})' if s.outcome else ''}, owner {s.owner or '-'}, "
         f"source {s.source}, accounts {', '.join(s.accounts) or '-'}")
    for item in detail.timeline:
        who = f" [{item.officer}]" if item.officer else ""
        echo(f"  {item.at:%Y-%m-%d %H:%M:%S}  {item.kind:<13} {item.ref:<10}"
             f"{who} {item.text}")


@incidents.command()
@click.argument("incident", type=RECORD_ID)
@click.argument("text")
@click.pass_context
def note(ctx: click.Context, incident: int, text: str) -> None:
    """Add a note to an incident."""
    actor = actor_of(ctx, "review")
    service.note(runtime_of(ctx), actor, incident, text)
    echo(f"note added to incident {incident}")


@incidents.command()
@click.argument("incident", type=RECORD_ID)
@click.argument("kind", type=click.Choice(LINK_KINDS))
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.pass_context
def link(ctx: click.Context, incident: int, kind: str, refs: tuple[str, ...]) -> None:
    """Link accounts, anomalies, withdrawals, alerts (by their key, e.g.
    source:203.0.113.5), 2FA requests or audit entries, by their ids, in one action.
    What does not exist is listed and the rest is linked; exit 2 if any was refused."""
    actor = actor_of(ctx, "review")
    results = service.link_many(runtime_of(ctx), actor, incident, [(kind, r) for r in refs])
    for result in results:
        if result.error is None:
            echo(f"{kind} {result.ref} " + ("linked" if result.added else
                                            "was already linked"))
    refused = [r for r in results if r.error is not None]
    if refused:
        raise InputError("; ".join(r.error or "" for r in refused))


@incidents.command()
@click.argument("incident", type=RECORD_ID)
@click.option("--note", help="A note on what was done.")
@click.option("--owner", help="Hand the incident to this officer.")
@click.pass_context
def contain(ctx: click.Context, incident: int, note: str | None, owner: str | None) -> None:
    """Mark the incident contained (the misuse is stopped; the case stays open)."""
    actor = actor_of(ctx, "review")
    service.set_state(runtime_of(ctx), actor, incident, "contained", note_text=note,
                      owner=owner)
    echo(f"incident {incident} contained")


@incidents.command()
@click.argument("incident", type=RECORD_ID)
@click.option("--outcome", required=True, type=click.Choice(OUTCOMES))
@click.option("--note", help="The conclusion.")
@click.pass_context
def close(ctx: click.Context, incident: int, outcome: str, note: str | None) -> None:
    """Close the incident with its outcome."""
    actor = actor_of(ctx, "review")
    service.set_state(runtime_of(ctx), actor, incident, "closed", outcome=outcome,
                      note_text=note)
    echo(f"incident {incident} closed ({outcome})")


@incidents.command()
@click.argument("incident", type=RECORD_ID)
@click.option("--format", "fmt", type=click.Choice(casefile.FORMATS), default="html",
              show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this new file (0600) instead of stdout.")
@click.option("--reveal", multiple=True, type=click.Choice(PII_FIELDS), metavar="FIELD",
              help="Show this personal-data field in full (repeatable; senior officers, "
                   "with --reason; audited).")
@click.option("--reason", help="Why the personal data is revealed.")
@click.pass_context
def export(ctx: click.Context, incident: int, fmt: str, out: Path | None,
           reveal: tuple[str, ...], reason: str | None) -> None:
    """A case file for the regulator: the incident's timeline, decisions, outcomes,
    accounts (masked unless revealed) and audit-log references, as one HTML page or
    JSON document. Its SHA-256 is recorded in the audit log."""
    if out is not None and out.exists():
        raise InputError(f"{out} exists: a case file is written to a new file")
    made = casefile.export(runtime_of(ctx), actor_of(ctx, "read"), incident, fmt,
                           reveal=reveal, reason=reason, out=out)
    if out is None:
        echo(made.data.decode(), nl=False)  # ASCII already: shown as it is
        return
    echo(f"case file of incident {incident} in {out} (sha256 {made.sha256})")
