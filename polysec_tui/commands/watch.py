"""`polysec watch`: the detector service (services/monitoring/watcher.py).

Runs until SIGTERM or SIGINT: the pass under way finishes, the lease is released, exit 0.
Logs one line per event of note to stderr, as text or (``--log-format json``) one JSON
object per line for journald and a SIEM; stdout stays empty.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from typing import Any

import click

from polysec_tui.commands.common import actor_of, echo, json_line, runtime_of
from polysec_tui.services.monitoring.export import ExportConfig, Exporter
from polysec_tui.services.monitoring.watcher import Log, WatchConfig, Watcher
from polysec_tui.services.officers.auth import require


def line_logger(log_format: str) -> Log:
    """log(event, level="info", **fields) writing one line to stderr."""

    def log(event: str, level: str = "info", **fields: Any) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if log_format == "json":
            doc = {"ts": at, "level": level, "event": event, **fields}
            echo(json_line(doc), err=True)
            return
        rest = " ".join(f"{key}={_text(value)}" for key, value in fields.items())
        echo(f"{at} {level} {event} {rest}".rstrip(), err=True)

    return log


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in sorted(value.items())) or "-"
    return str(value)


@click.command()
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: one object per line (journald, a SIEM).")
@click.pass_context
def watch(ctx: click.Context, log_format: str) -> None:
    """Judge every new login and withdrawal within seconds: the detector service.

    Runs the login detectors and withdrawal screening on what arrives (woken by
    PostgreSQL notifications, or a light poll on SQLite and MariaDB). Several can run on
    one database: one holds the lease, the others stand by and take over within seconds
    of its death. Stops on SIGTERM or Ctrl-C after the pass under way (exit 0).

    Needs an officer or automation token allowed to analyse logins and screen
    withdrawals; exit 3 when the session ends. Settings: [watch] (docs/monitoring.md).
    With [export] destinations, the lease holder also streams the audit log, alerts and
    its own health to the SIEM (docs/siem.md).
    """
    rt = runtime_of(ctx)
    actor = actor_of(ctx, "logins.analyze")
    require(actor, "withdrawals.screen")
    config = WatchConfig.from_settings(rt.settings)
    export = ExportConfig.from_settings(rt.settings)
    log = line_logger(log_format)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _sig, _frame: stop.set())
    watcher = Watcher(rt, actor, config=config, log=log, stop=stop)
    exporting = None
    if export.destinations:
        # The SIEM export runs beside the detectors, only while this watcher holds the
        # lease (one exporter per database), and never holds up a pass.
        exporter = Exporter(rt, export, log, watch=config)
        exporting = threading.Thread(target=exporter.run, args=(stop, lambda: watcher.holding),
                                     name="export", daemon=True)
        exporting.start()
    watcher.run()
    stop.set()
    if exporting is not None:
        exporting.join(timeout=30)
