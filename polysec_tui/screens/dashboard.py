"""The home screen: live figures of the database, its newest events and alerts.

Data is loaded by `DashboardService` in a thread worker (never on the UI thread) and comes
back as a plain `DashboardSummary` inside a `Loaded` message.

How it stays current by itself (issue 9):

- **Polling a change token.** Every ``POLL_SECONDS`` a thread worker asks the database for
  `DashboardService.change_token` (newest ids of the event tables, the audit log head,
  the held count, the backup catalogue: index lookups only). Only when the token differs
  from the one of the last load is the summary loaded again. An idle console therefore
  runs one cheap query every few seconds and writes nothing to the terminal: no busy
  redraws over a slow SSH link. SQLite and MariaDB rely on this alone.
- **PostgreSQL notifies.** There a background thread LISTENs (`services.live`; the
  triggers come with migration 0006) and asks for the token as soon as a watched table
  was written; the timer stays as a fallback every ``LISTEN_POLL_SECONDS``. See
  docs/live-dashboard.md for the reasoning.
- **The polling goes on while another screen is shown** (the dashboard's mode stays
  alive), so a high-severity alert reaches an officer working the queue. The 30 s full
  reload (sliding 24-hour windows drift without new rows) is paused while hidden.
- **Nothing is repainted that did not change.** Each card is updated only when its text
  or alert state changed, the events table only when the events changed, the alert bar
  only when the alerts changed. When a reload brings the same figures, only the "as of"
  line changes; the cursor stays where the officer left it.
- **Alerts.** Each unacknowledged alert (`services.alerts`: one per account, campaign
  source or failed run, growing as events arrive) is announced once per screen, and
  again when its severity rises:
  a notification (never markup) and a terminal bell (``App.bell``; the terminal decides
  whether it rings or flashes). At most ``MAX_ANNOUNCED`` are announced one by one per
  load, the rest in one summary notification. Nothing is announced while the session is
  locked (the lock screen must not show account ids); those alerts are announced after
  the unlock. ``a`` opens the alerts to acknowledge them (audited).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState, get_current_worker

from polysec_tui.screens.alerts import AlertsScreen
from polysec_tui.screens.mywork import MyWorkScreen
from polysec_tui.screens.rules import RulesReportScreen
from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    FigureCard,
    fill_table,
    move_cursor_to,
    safe_text,
)
from polysec_tui.services.monitoring import live
from polysec_tui.services.monitoring import watcher as monitoring
from polysec_tui.services.monitoring.alerts import Alert
from polysec_tui.services.monitoring.dashboard import (
    DashboardEvent,
    DashboardService,
    DashboardSummary,
)

REFRESH_SECONDS = 30.0
POLL_SECONDS = 3.0
LISTEN_POLL_SECONDS = 30.0  # the fallback poll while PostgreSQL notifications arrive
RELOAD_AFTER_AWAY_SECONDS = 5.0
MAX_ANNOUNCED = 3
ALERT_TOAST_SECONDS = 12  # the alert bar stays; the toasts must not hide the cards long
BACKUP_STALE_HOURS = 26.0  # a daily backup plus slack
DRILL_STALE_HOURS = 8 * 24.0  # a weekly drill plus a day

CARDS = (
    ("cards", (("card-accounts", "Accounts"), ("card-logins", "Logins 24 h"),
               ("card-ips", "Failing IPs"), ("card-withdrawals", "Withdrawals"),
               ("card-incidents", "Incidents"))),
    ("cards-live", (("card-rate", "Failed/hour"), ("card-anomalies", "Anomalies"),
                    ("card-approvals", "Four-eyes"), ("card-backup", "Backup"),
                    ("card-audit", "Audit"))),
)

# Border titles that fit a card of an 80-column terminal (five cards a row).
SHORT_TITLES = {"card-logins": "Logins 24h", "card-ips": "Bad IPs",
                "card-withdrawals": "Withdrawal", "card-rate": "Failed/h"}
WIDE_ENOUGH = 120

CardState = tuple[str, str, bool]


def _age(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def drill_state(s: DashboardSummary) -> tuple[str, bool]:
    """The backup card's bottom line: the last restore drill's age and result, and
    whether it calls for attention (none yet, failed, its record not validly signed,
    or older than a week and a day)."""
    d = s.drill
    if d is None:  # backups without a drill: nobody knows they restore
        return ("no drill", True) if s.backup is not None else ("", False)
    if d.signature != "valid":
        return (f"drill {d.signature}", True)
    age = _age(s.as_of, d.started_at).replace(" ago", "")
    failed = d.result != "pass"
    return (f"drill {age} {'✗' if failed else '✓'}",
            failed or d.age_hours(s.as_of) > DRILL_STALE_HOURS)


def card_states(s: DashboardSummary) -> dict[str, CardState]:
    """What each card shows: value, note, alert (plain data, so it can be compared)."""
    coverage = "n/a" if s.coverage_pct is None else f"{s.coverage_pct:.1f} %"
    states: dict[str, CardState] = {
        "card-accounts": (f"{s.accounts:,}", f"2FA {coverage}",
                          s.coverage_pct is not None and s.coverage_pct < 50),
        "card-logins": (f"{s.logins_ok_24h:,} ok", f"{s.logins_failed_24h:,} failed",
                        s.logins_failed_24h > 0),
        "card-ips": (f"{s.failing_ips_24h:,}", "in 24 h", s.failing_ips_24h > 0),
        "card-withdrawals": (f"{s.withdrawals_held:,} held",
                             f"{s.withdrawals_late:,} LATE" if s.withdrawals_late
                             else f"{s.withdrawals_pending:,} pending",
                             s.withdrawals_held > 0 or s.withdrawals_late > 0),
        "card-incidents": (f"{s.incidents_open:,} open", "or contained", s.incidents_open > 0),
        "card-rate": (f"{s.logins_failed_1h:,} last h", f"avg {s.failed_per_hour_24h:,.1f}",
                      s.failed_rate_alarming),
        "card-anomalies": (f"{s.anomalies_24h:,} in 24 h", f"{s.anomalies_high_24h:,} high+",
                           s.anomalies_high_24h > 0),
        "card-approvals": (f"{s.approvals_pending:,} pending",
                           _age(s.as_of, s.approvals_oldest_at).replace(" ago", " old")
                           if s.approvals_oldest_at else "none open", False),
    }
    b = s.backup
    if b is None:
        states["card-backup"] = ("none", "no backup yet", True)
    else:
        marks = f"ver{'✓' if b.verified else '✗'} ship{'✓' if b.shipped else '✗'}"
        stale = b.age_hours(s.as_of) > BACKUP_STALE_HOURS
        states["card-backup"] = (_age(s.as_of, b.created_at),
                                 "FAILED" if b.status == "failed" else marks,
                                 stale or b.status == "failed" or not b.verified
                                 or drill_state(s)[1])
    a = s.audit
    if a is None:
        states["card-audit"] = ("never", "not run yet", False)
    else:
        result = (a.result or "running").upper() if a.result == "fail" else (
            a.result or "running")
        states["card-audit"] = (result, _age(s.as_of, a.started_at), a.result == "fail")
    return states


class DashboardScreen(ConsoleScreen):
    TITLE_TEXT = "Dashboard"
    CSS_PATH = "dashboard.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reload", "Refresh", id="dashboard.refresh",
                tooltip="Load the figures and newest events again"),
        Binding("a", "alerts", "Alerts", id="dashboard.alerts",
                tooltip="Unacknowledged high-severity alerts; acknowledge them (audited)"),
        Binding("w", "my_work", "My work", id="dashboard.my-work",
                tooltip="What you claimed, what waits for your decision, your requests"),
        Binding("o", "rules_report", "Rules", id="dashboard.rules",
                tooltip="Each rule's hits, holds and recorded outcomes: is it worth its noise"),
        Binding("D", "demo_scenarios", "Demo scenarios", id="dashboard.demo-scenarios",
                tooltip="The attacks the demo injected: what to look for (demo only)"),
    ]

    class Loaded(Message, bubble=False):
        def __init__(self, summary: DashboardSummary,
                     token: tuple[Any, ...] | None = None) -> None:
            super().__init__()
            self.summary = summary
            self.token = token

    def __init__(self, refresh_seconds: float = REFRESH_SECONDS,
                 poll_seconds: float | None = None) -> None:
        super().__init__()
        self.summary: DashboardSummary | None = None
        self._refresh_seconds = refresh_seconds
        self._poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
        self._timer: Timer | None = None
        self._poll_timer: Timer | None = None
        self._suspended_at: float | None = None
        self._token: tuple[Any, ...] | None = None
        self._loader: Worker[None] | None = None
        self._shown: dict[str, CardState] = {}
        self._announced: set[tuple[str, str]] = set()  # (alert key, severity)
        self._again = False  # a change was signalled while a load was running
        self._poll_failed = False  # the last token query failed (and was reported)
        self._stop = threading.Event()
        self.listening = False  # PostgreSQL LISTEN is active (the poll is the fallback)
        self.polls = 0  # change-token queries made (tests, diagnostics)

    @cached_property
    def service(self) -> DashboardService:
        """The figures for this screen's officer (made once the screen is composed)."""
        return DashboardService(self.runtime, self.officer, clock=self.clock)

    def compose_body(self) -> ComposeResult:
        for row_id, cards in CARDS:
            with Horizontal(id=row_id, classes="cards"):
                for card_id, title in cards:
                    yield FigureCard(title, id=card_id)
        yield Static(Text(""), id="monitoring")
        yield Static(Text(""), id="alert-bar")
        table = ConsoleTable(id="events", cursor_type="row", zebra_stripes=True,
                             copy_column="account")
        table.border_title = "Newest events"
        table.note = "loading…"
        yield table

    def on_mount(self) -> None:
        self._timer = self.set_interval(self._refresh_seconds, self.action_reload, pause=True)
        self._poll_timer = self.set_interval(self._poll_seconds, self.poll)
        if self.runtime.engine.dialect.name == "postgresql":
            threading.Thread(target=self._listen, name="polysec-dashboard-listen",
                             daemon=True).start()

    def on_unmount(self) -> None:
        self._stop.set()

    # ------------------------------------------------- PostgreSQL notifications

    def _listen(self) -> None:
        """Background thread (not a Textual worker: it runs as long as the screen): wait
        for notifications and poll at once when one arrives. Any failure ends it and
        leaves the ordinary polling in charge."""
        try:
            listener = live.listener_for(self.runtime.engine)
        except Exception:  # no listener: polling goes on
            return
        if listener is None:
            return
        try:
            self._to_ui(self._set_listening, True)
            while not self._stop.is_set():
                if listener.wait(1.0) and not self._stop.is_set():
                    self._to_ui(self.poll)
        except Exception:  # a dropped connection: back to polling
            self._to_ui(self._set_listening, False)
        finally:
            listener.close()

    def _to_ui(self, callback: Any, *args: Any) -> None:
        if self._stop.is_set():
            return
        try:
            self.app.call_from_thread(callback, *args)
        except RuntimeError:  # the app is shutting down
            self._stop.set()

    def _set_listening(self, listening: bool) -> None:
        self.listening = listening
        if self._poll_timer is not None:
            self._poll_timer.stop()
        interval = max(self._poll_seconds, LISTEN_POLL_SECONDS) if listening \
            else self._poll_seconds
        self._poll_timer = self.set_interval(interval, self.poll)

    def on_resize(self) -> None:
        short = self.size.width < WIDE_ENOUGH
        for _row, cards in CARDS:
            for card_id, title in cards:
                wanted = SHORT_TITLES.get(card_id, title) if short else title
                card = self.query_one(f"#{card_id}", FigureCard)
                if card.border_title != wanted:
                    card.border_title = wanted

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
        self._loader = self.load(True)

    def poll(self) -> None:
        """The poll timer: ask for the change token unless a load is under way (and
        announce alerts that arrived while the session was locked)."""
        if self.summary is not None:
            self._announce(self.summary.alerts)
        if self._loader is not None and self._loader.is_running:
            self._again = True  # ask again when it is done: the change may be newer
            return
        self._loader = self.load(False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if (event.worker is self._loader and event.state is WorkerState.SUCCESS
                and self._again):
            self._again = False
            self.poll()

    @work(thread=True, exclusive=True, exit_on_error=False, group="dashboard")
    def load(self, force: bool = True) -> None:
        # The token first: a change that lands between it and the summary is seen by
        # the next poll (never missed, at worst loaded twice).
        try:
            token = self.service.change_token()
        except Exception:
            # A database that is away is reported once, not on every poll.
            if force or not self._poll_failed:
                self._poll_failed = True
                raise
            return
        self._poll_failed = False
        if not force:
            self.polls += 1
            if token == self._token:
                return
        summary = self.service.summary()
        if not get_current_worker().is_cancelled:
            self.post_message(self.Loaded(summary, token))

    def on_dashboard_screen_loaded(self, message: DashboardScreen.Loaded) -> None:
        new = message.summary
        if message.token is not None:
            self._token = message.token
        old, self.summary = self.summary, new
        table = self.query_one("#events", ConsoleTable)
        table.note = f"as of {new.as_of:%Y-%m-%d %H:%M:%S} UTC"
        self._announce(new.alerts)
        if old is not None and dataclasses.replace(new, as_of=old.as_of) == old:
            return
        self._show_figures(new)
        if old is None or (old.alerts, old.alerts_late) != (new.alerts, new.alerts_late):
            self._show_alert_bar(new.alerts, new.alerts_late)
        if old is None or old.events != new.events:
            self._show_events(table, new.events)

    def worker_failed(self, error: BaseException) -> None:
        table = self.query_one("#events", ConsoleTable)
        table.note = "load failed: figures may be stale"

    # ------------------------------------------------------------------- alerts

    def _announce(self, current: tuple[Alert, ...]) -> None:
        if getattr(self.app, "locked", False):
            return  # after the unlock (the lock screen must not show account ids)
        # An alert is announced when it appears, and again when its severity rises.
        new = [a for a in current if (a.key, a.severity) not in self._announced]
        if not new:
            return
        self._announced.update((a.key, a.severity) for a in new)
        for alert in reversed(new[:MAX_ANNOUNCED]):  # oldest first: newest toast on top
            who = f" · {alert.account}" if alert.account else ""
            self.app.notify(f"{alert.title}{who}\n{alert.detail}",
                            title=f"ALERT ({alert.severity})", markup=False,
                            timeout=ALERT_TOAST_SECONDS,
                            severity="error" if alert.severity == "critical" else "warning")
            self.app.bell()
        if len(new) > MAX_ANNOUNCED:
            self.app.notify(f"and {len(new) - MAX_ANNOUNCED} more alert(s): press a",
                            title="ALERTS", severity="warning", markup=False,
                            timeout=ALERT_TOAST_SECONDS)

    def _show_alert_bar(self, current: tuple[Alert, ...], late: int = 0) -> None:
        bar = self.query_one("#alert-bar", Static)
        bar.display = bool(current)
        if current:
            newest = current[0]
            who = f" {newest.account}" if newest.account else ""
            bar.update(Text.assemble(
                (f" {len(current)} ALERT{'S' if len(current) > 1 else ''} ", "bold reverse"),
                *(((f" {late} PAST SLA ", "bold reverse red"),) if late else ()),
                " ", safe_text(f"{newest.title}{who}"), "  (a: acknowledge)"))

    def action_my_work(self) -> None:
        """What you claimed, what waits for your decision, your requests."""
        self.app.push_screen(MyWorkScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_scenarios":  # only the demo database has them
            return bool(getattr(self.app, "demo", False))
        return super().check_action(action, parameters)

    def action_demo_scenarios(self) -> None:
        """The attacks the demo injected."""
        from polysec_tui.screens.scenarios import DemoScenariosScreen

        self.app.push_screen(DemoScenariosScreen())

    def action_rules_report(self) -> None:
        """Each rule's hits, holds and outcomes."""
        self.app.push_screen(RulesReportScreen())

    def action_alerts(self) -> None:
        if self.actor is None:
            return
        items = self.summary.alerts if self.summary is not None else ()
        if not items:
            self.notify("No unacknowledged alerts.", markup=False, timeout=3)
            return
        self.app.push_screen(AlertsScreen(self.runtime, self.actor, items),
                             self._after_alerts)

    def _after_alerts(self, acknowledged: int | None) -> None:
        if acknowledged:
            self.action_reload()

    # ------------------------------------------------------------------ figures

    def _show_figures(self, s: DashboardSummary) -> None:
        self._show_monitoring(s)
        for card_id, state in card_states(s).items():
            if self._shown.get(card_id) == state:
                continue
            self._shown[card_id] = state
            value, note, alert = state
            self.query_one(f"#{card_id}", FigureCard).show(value, note, alert=alert)
        drill, _attention = drill_state(s)  # the card's alert includes the drill's
        card = self.query_one("#card-backup", FigureCard)
        if card.border_subtitle != drill:
            card.border_subtitle = drill

    def _show_monitoring(self, s: DashboardSummary) -> None:
        status = s.watcher
        line = monitoring.describe(status, s.as_of) if status is not None else ""
        if self._shown.get("monitoring") == (line, "", False):
            return
        self._shown["monitoring"] = (line, "", False)
        bar = self.query_one("#monitoring", Static)
        bar.set_class(status is not None and (status.stale or (status.ever_ran
                                                                and not status.running)),
                      "stalled")
        bar.update(Text.assemble(("Monitoring ", "bold"), safe_text(line)))

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
            move_cursor_to(table, min(row, len(events) - 1))
