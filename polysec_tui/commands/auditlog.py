"""`polysec auditlog`: verify the officer audit log, export a signed checkpoint, read it.

Every subcommand needs the ``auditlog.read`` permission and is itself recorded in the log.
Entry fields are untrusted text: printed plainly, control characters escaped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from polysec_tui.commands.common import RECORD_ID, actor_of, echo, emit_json, runtime_of
from polysec_tui.errors import CheckFailed, InputError
from polysec_tui.services import auditchain
from polysec_tui.services.auditchain import AuditEntryView
from polysec_tui.services.officers import auditlog as service
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import visible, visible_lines

PERMISSION = "auditlog.read"


def _open(ctx: click.Context) -> tuple[Runtime, Actor]:
    actor = actor_of(ctx, PERMISSION)
    return runtime_of(ctx), actor


def _record(rt: Runtime, actor: Actor, action: str, details: dict[str, Any], *,
            target: str | None = None) -> None:
    with rt.transaction() as session:
        rt.audit.append(session, officer=actor.name, action=action, at=rt.clock(),
                        target=target, details=details)


def _line(entry: AuditEntryView) -> str:
    details = json.dumps(entry.details, sort_keys=True, ensure_ascii=False)
    fields = (str(entry.seq), auditchain.format_time(entry.at), entry.officer, entry.action,
              entry.target or "-", details)
    return "  ".join(visible(f) for f in fields)


@click.group()
def auditlog() -> None:
    """The officer audit log: verify, checkpoint, tail, show."""


@auditlog.command()
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A checkpoint file from `polysec auditlog checkpoint` (catches truncation).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def verify(ctx: click.Context, checkpoint_path: Path | None, as_json: bool) -> None:
    """Check the whole hash chain; exit 1 naming the first bad entry."""
    rt, actor = _open(ctx)
    cp = service.load_checkpoint(rt, checkpoint_path) if checkpoint_path else None
    report = service.verify(rt, cp)
    try:
        _record(rt, actor, "auditlog.verify", {
            "ok": report.ok, "entries_checked": report.entries_checked,
            "first_bad_seq": report.first_bad_seq, "head_seq": report.head_seq,
            "checkpoint_seq": cp.seq if cp else None})
    except CheckFailed:
        if report.ok:  # the log changed under the verification: report that instead
            raise
        # A log broken at its end cannot take this entry; the report says why.
    if as_json:
        emit_json({**report.to_dict(), "checkpoint_seq": cp.seq if cp else None})
    elif report.ok:
        extra = f", checkpoint seq {cp.seq} present" if cp else ""
        echo(report.message() + extra)
    if not report.ok:
        raise CheckFailed(visible(report.message()))


@auditlog.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def checkpoint(ctx: click.Context, file: Path) -> None:
    """Verify the log and write its signed head to FILE, a new file (an existing one is
    never overwritten: it may be the checkpoint that proves an older state). Keep it
    outside the database."""
    rt, actor = _open(ctx)
    cp = service.checkpoint(rt)  # CheckFailed (exit 1) when the log is broken
    auditchain.write_checkpoint(file, cp)  # never over an existing file
    _record(rt, actor, "auditlog.checkpoint",
            {"seq": cp.seq, "hash": cp.hash, "file": str(file)})
    echo(f"checkpoint written to {visible(str(file))}: seq {cp.seq} hash {cp.hash}")


@auditlog.command()
@click.option("-n", "count", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="How many entries.")
@click.option("--officer", help="Only this officer's entries.")
@click.option("--action", help="Only this action.")
@click.option("--target", help="Only entries about this target.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def tail(ctx: click.Context, count: int, officer: str | None, action: str | None,
         target: str | None, as_json: bool) -> None:
    """The newest entries, newest first."""
    rt, actor = _open(ctx)
    with rt.sessions() as session:
        entries = auditchain.tail(session, count, officer=officer, action=action, target=target)
    _record(rt, actor, "auditlog.tail", {"n": count, "officer": officer, "action": action,
                                         "target": target, "shown": len(entries)})
    if as_json:
        emit_json([e.to_dict() for e in entries])
        return
    for entry in entries:
        echo(_line(entry))


@auditlog.command()
@click.argument("seq", type=RECORD_ID)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def show(ctx: click.Context, seq: int, as_json: bool) -> None:
    """One entry in full."""
    rt, actor = _open(ctx)
    with rt.sessions() as session:
        entry = auditchain.show(session, seq)
    _record(rt, actor, "auditlog.show", {"seq": seq, "found": entry is not None})
    if entry is None:
        raise InputError(f"no audit log entry {seq}")
    if as_json:
        emit_json(entry.to_dict())
        return
    doc = entry.to_dict()
    doc["details"] = json.dumps(entry.details, sort_keys=True, ensure_ascii=False, indent=2)
    for name, value in doc.items():
        echo(f"{name}: {visible('-' if value is None else str(value))}"
             if name != "details" else f"details: {visible_lines(value)}")


