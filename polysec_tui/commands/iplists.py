"""`polysec iplists import | list | check | remove`."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.services.networks import reputation as service
from polysec_tui.text import printable


@click.group()
def iplists() -> None:
    """IP reputation: threat lists (FireHOL, CrowdSec), Tor exits, and what kind of
    network each AS is (hosting, VPN, mobile ...). The login detectors and screening
    name the list and its age in every finding they raise from one (`ip_reputation`,
    `anonymizing_network`). docs/anomalies.md."""


@iplists.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--format", "fmt", type=click.Choice(service.FORMATS),
              help="netset (FireHOL, or any list of addresses and CIDRs, one per line), tor "
                   "(Tor's exit-addresses), crowdsec (cscli decisions CSV) or asn (CSV: "
                   "asn,category[,name]). Default: from the content.")
@click.option("--name", metavar="NAME",
              help="The list this file is a version of. Default: the file's name without "
                   "its extension.")
@click.option("--category", type=click.Choice(service.THREAT + service.ANONYMIZING),
              help="What the addresses of the list are. Default: attack (tor for Tor's "
                   "exit-addresses); an ASN table names a category per line.")
@click.option("--version", "version", metavar="TEXT",
              help="The version's name. Default: the file's date, else its SHA-256.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def import_(ctx: click.Context, file: BinaryIO, fmt: str | None, name: str | None,
            category: str | None, version: str | None, as_json: bool) -> None:
    """Replace a list's entries with those of FILE (senior, admin or automation; audited;
    one transaction). A file with a line that is not an address, a network or an AS
    number is refused (exit 2) and changes nothing."""
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "iplists.import")
    fmt, parsed, sha256 = service.read_file(file, fmt)
    if name is None:
        path = str(getattr(file, "name", "") or "")
        if not path or path.startswith("<"):
            raise click.UsageError("give --name when the list comes from standard input")
        name = Path(path).name.split(".", 1)[0]
    report = service.import_list(rt, actor, fmt, parsed, sha256, name=name,
                                 category=category, version=version)
    if as_json:
        emit_json(report.as_dict())
        return
    skipped = [f"{report.skipped_local:,} range(s) wholly or partly private or reserved"
               if report.skipped_local else "",
               f"{report.skipped_scope:,} decision(s) not on an address"
               if report.skipped_scope else "",
               f"{report.skipped_simulated:,} simulated decision(s)"
               if report.skipped_simulated else ""]
    echo(f"{printable(report.name)} ({report.category}, {report.format}) version "
         f"{printable(report.version)}: {report.entries:,} entries (before: "
         f"{report.previous_entries:,})"
         + (f"; skipped {', '.join(s for s in skipped if s)}" if any(skipped) else ""))


@iplists.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """The imported lists: category, version, date, entries, age."""
    rt = runtime_of(ctx)
    views = service.list_lists(rt, actor_of(ctx, "read"))
    now = rt.clock()
    if as_json:
        emit_json([v.as_dict() | {"age_seconds": round((now - v.as_of).total_seconds())}
                   for v in views])
        return
    if not views:
        echo("no IP list imported (`polysec iplists import FILE`)")
    for v in views:
        echo(f"{printable(v.name):<28} {v.category:<10} {v.format:<9} "
             f"{v.entries:>9,} entries  as of {v.as_of:%Y-%m-%d %H:%M}  {v.age_at(now)}")


@iplists.command("check")
@click.argument("ip", required=False)
@click.option("--asn", type=click.IntRange(0, 2 ** 32 - 1), metavar="N",
              help="Also the network AS N.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def check(ctx: click.Context, ip: str | None, asn: int | None, as_json: bool) -> None:
    """Which lists hold IP and/or the network AS N. Exit 0 either way."""
    if ip is None and asn is None:
        raise click.UsageError("give an IP, --asn N, or both")
    rt = runtime_of(ctx)
    now = rt.clock()
    marks = service.check(rt, actor_of(ctx, "read"), ip, asn)
    if as_json:
        emit_json({"ip": ip, "asn": asn, "marks": [m.as_dict(now) | {"rule": m.rule}
                                                    for m in marks]})
        return
    if not marks:
        echo("on no imported list")
    for m in marks:
        echo(printable(m.explanation(now), limit=400))


@iplists.command("remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def remove(ctx: click.Context, name: str, as_json: bool) -> None:
    """Drop list NAME and its entries (senior, admin or automation; audited)."""
    view = service.remove_list(runtime_of(ctx), actor_of(ctx, "iplists.import"), name)
    if as_json:
        emit_json(view.as_dict())
        return
    echo(f"removed {printable(view.name)} ({view.entries:,} entries)")
