"""`polysec ingest accounts|logins|security-events|withdrawals|sessions|prices FILE|-`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import click

from polysec_tui.commands.common import echo, emit_json, runtime_of
from polysec_tui.errors import InputError
from polysec_tui.services.feed.ingest import KINDS, IngestRejected, IngestReport, ingest_stream


@click.command()
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("source", metavar="FILE|-")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "rba-csv"]), default="jsonl",
              show_default=True, help="rba-csv: the public RBA login dataset layout (logins).")
@click.option("--strict/--skip-bad", default=True, show_default=True,
              help="strict: any bad line rejects the whole file; skip-bad: write the good lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def ingest(ctx: click.Context, kind: str, source: str, fmt: str, strict: bool,
           as_json: bool) -> None:
    """Load platform events of KIND from FILE (or - for standard input).

    Idempotent on each event's `id` (a price: its asset, currency and time): a line
    already loaded is counted as a duplicate.
    Field reference: docs/ingest.md. Exit 2 when strict mode rejected the input.
    """
    rt = runtime_of(ctx)
    stream: IO[bytes]
    if source == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = Path(source).open("rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InputError(f"cannot read {source}: {exc.strerror}") from None
    try:
        report = ingest_stream(rt, kind, stream, fmt=fmt, skip_bad=not strict)
    except IngestRejected as exc:
        _show(exc.report, as_json)
        raise
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    _show(report, as_json)


def _show(report: IngestReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_dict())
    for bad in report.bad:
        echo(f"line {bad.line}: {bad.reason}", err=True)
    if report.bad_count > len(report.bad):
        echo(f"... and {report.bad_count - len(report.bad)} more bad line(s)", err=True)
    if not as_json and report.written:
        skipped = f", {report.bad_count} bad line(s) skipped" if report.bad_count else ""
        echo(
            f"{report.kind}: {report.inserted} new, {report.duplicates} already present"
            f"{skipped} ({report.lines} lines read)"
        )
