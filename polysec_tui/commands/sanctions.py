"""`polysec sanctions import | lists | check`."""

from __future__ import annotations

from typing import BinaryIO

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.services.withdrawals import sanctions as service
from polysec_tui.services.withdrawals.screening import config_in_force
from polysec_tui.text import printable, unvisible, visible


@click.group()
def sanctions() -> None:
    """Sanctions lists of digital currency addresses (OFAC SDN, OpenSanctions): screening
    holds a withdrawal to a listed address (`address_sanctioned`, critical) and its
    approval needs a second officer. docs/screening.md."""


@sanctions.command("import")
@click.argument("files", nargs=-1, required=True, type=click.File("rb"))
@click.option("--format", "fmt", type=click.Choice(service.FORMATS),
              help="ofac-xml (sdn_advanced.xml), ofac-csv (SDN.CSV, with SDN_COMMENTS.CSV) or "
                   "opensanctions (FollowTheMoney JSON lines). Default: from the content.")
@click.option("--list", "name", metavar="NAME",
              help="The list this file is a version of. Default: \"OFAC SDN\" or "
                   "\"OpenSanctions crypto wallets\".")
@click.option("--version", "version", metavar="TEXT",
              help="The version's name. Default: the file's date of issue (the newest "
                   "last_change for OpenSanctions), else its SHA-256.")
@click.option("--allow-shrink", is_flag=True,
              help="Accept a file dated before the imported version, or one that removes "
                   "more than half of the list's addresses (both refused otherwise).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def import_(ctx: click.Context, files: tuple[BinaryIO, ...], fmt: str | None,
            name: str | None, version: str | None, allow_shrink: bool,
            as_json: bool) -> None:
    """Replace a list's addresses with those of FILES (senior, admin or automation;
    audited; one transaction). Past withdrawals to newly listed addresses are re-screened:
    pending ones are held, every account that paid one gets a critical alert. A file
    without any address is refused (exit 2) and changes nothing."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "sanctions.import")
    fmt, parsed, sha256 = service.read_files(list(files), fmt)
    weight = config_in_force(rt).weight(service.RULE)
    report = service.import_list(rt, actor, fmt, parsed, sha256, weight=weight, name=name,
                                 version=version, allow_shrink=allow_shrink)
    if as_json:
        emit_json(report.as_dict())
        return
    echo(f"{printable(report.name)} version {printable(report.version)}: "
         f"{report.addresses:,} address(es), {report.added:,} new, {report.removed:,} "
         f"removed" + (f", {report.skipped:,} skipped (not an address a withdrawal can "
                       "have)" if report.skipped else ""))
    echo(f"re-screened: {report.past_withdrawals:,} past withdrawal(s) of "
         f"{report.accounts:,} account(s) to newly listed addresses; {report.held:,} held "
         f"now, {report.flagged:,} in review flagged")


@sanctions.command("lists")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def lists(ctx: click.Context, as_json: bool) -> None:
    """The imported lists: version, date, addresses."""
    views = service.list_lists(runtime_of(ctx), actor_of(ctx, "read"))
    if as_json:
        emit_json([v.as_dict() for v in views])
        return
    if not views:
        echo("no sanctions list imported (`polysec sanctions import FILE`)")
    for v in views:
        published = f"{v.published_at:%Y-%m-%d}" if v.published_at else "undated"
        echo(f"{printable(v.name):<32} {printable(v.version):<24} {published:<10} "
             f"{v.addresses:>9,} addresses  imported {v.imported_at:%Y-%m-%d %H:%M}")


@sanctions.command("check")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def check(ctx: click.Context, address: str, as_json: bool) -> None:
    """Where ADDRESS (written as polysec shows it) is listed, and the confirmed-fraud
    withdrawals that paid it. Exit 0 either way."""
    exact = unvisible(address)
    found, paid = service.check_address(runtime_of(ctx), actor_of(ctx, "read"), exact)
    if as_json:
        emit_json({"address": exact, "listed": [f.as_dict() for f in found],
                   "confirmed_fraud_withdrawals": paid})
        return
    if not found and not paid:
        echo(f"{visible(exact)}: on no imported list, paid by no confirmed fraud")
    for f in found:
        echo(printable(f.explanation(), limit=400))
    if paid:
        echo(f"{visible(exact)} received withdrawal(s) recorded as confirmed fraud: "
             f"{', '.join(printable(p) for p in paid[:20])}")
