"""`polysec blocklist add|remove|list|import`."""

from __future__ import annotations

import sys
from typing import BinaryIO

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.errors import InputError
from polysec_tui.services.withdrawals import blocklist as service
from polysec_tui.text import printable, unvisible, visible


@click.group()
def blocklist() -> None:
    """Destination addresses that screening flags (`address_blocklisted`) and that
    cannot be approved. Adding: any reviewing officer; removing: senior officers."""


@blocklist.command()
@click.argument("address")
@click.option("--reason", required=True)
@click.pass_context
def add(ctx: click.Context, address: str, reason: str) -> None:
    """Block ADDRESS (audited), exactly as polysec shows it: a hidden character is
    written as its escape (\\x1b, \\u202e) and a backslash as \\\\."""
    rt = runtime_of(ctx)
    exact = unvisible(address)
    new = service.add(rt, actor_of(ctx, "blocklist.add"), exact, reason)
    echo(f"{visible(exact)} {'blocklisted' if new else 'was blocklisted already'}")


@blocklist.command()
@click.argument("address")
@click.option("--reason", required=True)
@click.pass_context
def remove(ctx: click.Context, address: str, reason: str) -> None:
    """Unblock ADDRESS (senior officers; audited), written as for `add`."""
    rt = runtime_of(ctx)
    exact = unvisible(address)
    service.remove(rt, actor_of(ctx, "blocklist.remove"), exact, reason)
    echo(f"{visible(exact)} removed from the blocklist")


@blocklist.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """The blocklist, newest first."""
    rt = runtime_of(ctx)
    entries = service.list_blocked(rt, actor_of(ctx, "read"))
    if as_json:
        emit_json([e.as_dict() for e in entries])
        return
    if not entries:
        echo("the blocklist is empty")
    for e in entries:
        echo(f"{visible(e.address):<48} {e.added_at:%Y-%m-%d %H:%M} "
             f"{printable(e.added_by or '?'):<12} {printable(e.reason)}")


@blocklist.command("import")
@click.argument("source", type=click.File("rb"))
@click.option("--reason", required=True, help="Reason recorded for lines that give none.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def import_(ctx: click.Context, source: BinaryIO, reason: str,
            as_json: bool) -> None:
    """Block every address in SOURCE (a file or -): one per line, optionally followed by
    a comma and a reason, written as for `add` (a comma or a surrounding space in an
    address as \\x2c or \\x20); blank lines and lines starting with # are skipped. All
    or nothing: one bad line rejects the file (exit 2; the message names the line, never
    its content)."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "blocklist.add")
    entries: list[tuple[str, str]] = []
    for n, raw in enumerate(source, 1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InputError(f"line {n}: not UTF-8") from None
        if not text or text.startswith("#"):
            continue
        address, _, why = text.partition(",")
        exact = unvisible(address.strip())
        try:
            service.clean_address(exact)
        except InputError as exc:
            raise InputError(f"line {n}: {exc}") from None
        entries.append((exact, why.strip() or reason))
    added = service.import_addresses(rt, actor, entries)
    if as_json:
        emit_json({"read": len(entries), "added": added})
    else:
        echo(f"read {len(entries)} address(es); {added} newly blocklisted")
    sys.stdout.flush()
