"""The home screen: figures of the database and its newest events.

Data is loaded by `DashboardService` in a thread worker (never on the UI thread) and comes
back as a plain `DashboardSummary` inside a `Loaded` message. It is reloaded by `r`, when
the screen comes back into view after more than a few seconds away, and by a timer every
30 s that is paused while another screen (or the command palette) is shown. When a reload
brings the same figures, only the "as of" line changes: no table rebuild, no flicker, the
cursor stays where the officer left it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable
from textual.worker import get_current_worker

from polysec_tui.screens.widgets import ConsoleScreen, FigureCard, fill_table, safe_text
from polysec_tui.services.auth import Actor
from polysec_tui.services.dashboard import DashboardEvent, DashboardService, DashboardSummary
from polysec_tui.services.runtime import Clock, Runtime

REFRESH_SECONDS = 30.0
RELOAD_AFTER_AWAY_SECONDS = 5.0


class DashboardScreen(ConsoleScreen):
    TITLE_TEXT = "Dashboard"
    CSS_PATH = "dashboard.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reload", "Refresh", id="dashboard.refresh",
                tooltip="Load the figures and newest events again"),
    ]

    class Loaded(Message, bubble=False):
        def __init__(self, summary: DashboardSummary) -> None:
            super().__init__()
            self.summary = summary

    def __init__(self, runtime: Runtime, clock: Clock, actor: Actor,
                 refresh_seconds: float = REFRESH_SECONDS) -> None:
        super().__init__(runtime, clock, actor)
        self.service = DashboardService(runtime, actor, clock=clock)
        self.summary: DashboardSummary | None = None
        self._refresh_seconds = refresh_seconds
        self._timer: Timer | None = None
        self._suspended_at: float | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="cards"):
            yield FigureCard("Accounts", id="card-accounts")
            yield FigureCard("Logins 24 h", id="card-logins")
            yield FigureCard("Failing IPs", id="card-ips")
            yield FigureCard("Withdrawals", id="card-withdrawals")
        table: DataTable[Text] = DataTable(id="events", cursor_type="row", zebra_stripes=True)
        table.border_title = "Newest events"
        table.border_subtitle = "loading…"
        yield table

    def on_mount(self) -> None:
        self._timer = self.set_interval(self._refresh_seconds, self.action_reload, pause=True)

    def on_screen_resume(self) -> None:
        # First show, or back from another screen after a while: reload. Back from the
        # command palette or a quick modal: the figures are fresh enough.
        away = time.monotonic() - self._suspended_at if self._suspended_at else None
        if self.summary is None or away is None or away >= RELOAD_AFTER_AWAY_SECONDS:
            self.action_reload()
        if self._timer is not None:
            self._timer.resume()

    def on_screen_suspend(self) -> None:
        self._suspended_at = time.monotonic()
        if self._timer is not None:
            self._timer.pause()

    def action_reload(self) -> None:
        """Reload the figures (the previous load, if still running, is cancelled)."""
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="dashboard")
    def load(self) -> None:
        summary = self.service.summary()
        if not get_current_worker().is_cancelled:
            self.post_message(self.Loaded(summary))

    def on_dashboard_screen_loaded(self, message: DashboardScreen.Loaded) -> None:
        new = message.summary
        old, self.summary = self.summary, new
        table = self.query_one("#events", DataTable)
        table.border_subtitle = f"as of {new.as_of:%Y-%m-%d %H:%M:%S} UTC"
        if old is not None and dataclasses.replace(new, as_of=old.as_of) == old:
            return
        self._show_figures(new)
        self._show_events(table, new.events)

    def worker_failed(self, error: BaseException) -> None:
        table = self.query_one("#events", DataTable)
        table.border_subtitle = "load failed: figures may be stale"

    def _show_figures(self, s: DashboardSummary) -> None:
        coverage = "n/a" if s.coverage_pct is None else f"{s.coverage_pct:.1f} %"
        self.query_one("#card-accounts", FigureCard).show(
            f"{s.accounts:,}", f"2FA {coverage}", alert=s.coverage_pct is not None
            and s.coverage_pct < 50)
        self.query_one("#card-logins", FigureCard).show(
            f"{s.logins_ok_24h:,} ok", f"{s.logins_failed_24h:,} failed",
            alert=s.logins_failed_24h > 0)
        self.query_one("#card-ips", FigureCard).show(
            f"{s.failing_ips_24h:,}", "in 24 h", alert=s.failing_ips_24h > 0)
        self.query_one("#card-withdrawals", FigureCard).show(
            f"{s.withdrawals_held:,} held", f"{s.withdrawals_pending:,} pending",
            alert=s.withdrawals_held > 0)

    def _show_events(self, table: DataTable[Text], events: tuple[DashboardEvent, ...]) -> None:
        row = table.cursor_row
        # Account ids are as long as the platform makes them: show them whole when the
        # terminal allows, and leave the rest of the width to the detail column.
        longest = max((len(e.account) for e in events), default=7)
        rows = [
            (Text(f"{event.at:%m-%d %H:%M}"),
             safe_text(event.kind.replace("_", " ") if event.source == "security"
                       else event.label),
             safe_text(event.account, limit=64),
             safe_text(event.detail))
            for event in events
        ]
        fill_table(table, [
            ("at", "Time (UTC)", None),
            ("event", "Event", None),
            ("account", "Account", max(7, min(longest, self.size.width // 5))),
            ("detail", "Detail", None),
        ], rows)
        if events:
            table.move_cursor(row=min(row, len(events) - 1))
