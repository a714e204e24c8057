"""The alerts modal: unacknowledged high-severity events, acknowledged one at a time.

Opened from the dashboard (``a``). ``enter`` acknowledges the selected alert in a thread
worker (``services.alerts.acknowledge``: one row and one audit entry in one transaction);
the row leaves the table once the database has it. Another officer who acknowledged the
same alert first makes this a conflict, shown as an error; the row is dropped either way.
Every text cell is untrusted platform text and goes through ``safe_text``.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from polysec_tui.errors import ConflictError, PolysecError
from polysec_tui.screens.widgets import describe_error, fill_table, move_cursor_to, safe_text
from polysec_tui.services.monitoring import alerts
from polysec_tui.services.monitoring.alerts import Alert
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime


class AlertsScreen(ModalScreen[int]):
    """Returns how many alerts this officer acknowledged."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "acknowledge", "Acknowledge", id="alerts.acknowledge",
                tooltip="Acknowledge the selected alert (audited)", priority=True),
        Binding("escape", "close", "Close", id="alerts.close",
                tooltip="Back to the dashboard"),
    ]
    DEFAULT_CSS = """
    AlertsScreen { align: center middle; }
    AlertsScreen #alerts-box { width: 90%; height: 80%; border: thick $error;
                               background: $surface; padding: 0 1; }
    AlertsScreen #alerts-help { height: 1; color: $text-muted; }
    AlertsScreen #alerts-table { height: 1fr; }
    """

    def __init__(self, runtime: Runtime, actor: Actor, items: tuple[Alert, ...]) -> None:
        super().__init__()
        self.runtime = runtime
        self.actor = actor
        self.items = list(items)
        self.acknowledged = 0
        self._pending: set[str] = set()

    def compose(self) -> ComposeResult:
        with Vertical(id="alerts-box") as box:
            box.border_title = f"Alerts ({len(self.items)} unacknowledged)"
            yield Static(Text("enter acknowledge · escape close"), id="alerts-help")
            table: DataTable[Text] = DataTable(id="alerts-table", cursor_type="row")
            yield table

    def on_mount(self) -> None:
        self._fill()
        self.query_one("#alerts-table", DataTable).focus()

    def _fill(self) -> None:
        table = self.query_one("#alerts-table", DataTable)
        rows = [(Text(f"{a.at:%m-%d %H:%M}"), safe_text(a.severity), safe_text(a.title),
                 safe_text(a.account, limit=64), safe_text(a.detail)) for a in self.items]
        fill_table(table, [("at", "Time (UTC)", None), ("severity", "Severity", None),
                           ("alert", "Alert", None), ("account", "Account", None),
                           ("detail", "Detail", None)], rows)
        box = self.query_one("#alerts-box")
        box.border_title = f"Alerts ({len(self.items)} unacknowledged)"

    def action_close(self) -> None:
        self.dismiss(self.acknowledged)

    def action_acknowledge(self) -> None:
        table = self.query_one("#alerts-table", DataTable)
        if not self.items or table.cursor_row < 0 or table.cursor_row >= len(self.items):
            self.app.bell()
            return
        alert = self.items[table.cursor_row]
        if alert.key in self._pending:
            return
        self._pending.add(alert.key)
        self._acknowledge(alert)

    @work(thread=True, exit_on_error=False, group="alerts")
    def _acknowledge(self, alert: Alert) -> None:
        try:
            alerts.acknowledge(self.runtime, self.actor, alert.key)
        except ConflictError as conflict:
            self.app.call_from_thread(self._done, alert, str(conflict))
        except PolysecError as refused:
            self.app.call_from_thread(self._failed, alert, describe_error(refused))
        else:
            self.app.call_from_thread(self._done, alert, None)

    def _done(self, alert: Alert, conflict: str | None) -> None:
        self._pending.discard(alert.key)
        if conflict is None:
            self.acknowledged += 1
            self.notify(f"Acknowledged {alert.key}", markup=False, timeout=3)
        else:
            self.notify(conflict, title="Already acknowledged", severity="warning",
                        markup=False)
        self.items = [a for a in self.items if a.key != alert.key]
        if not self.is_attached:
            return
        table = self.query_one("#alerts-table", DataTable)
        row = table.cursor_row
        self._fill()
        if self.items:
            move_cursor_to(table, min(row, len(self.items) - 1))

    def _failed(self, alert: Alert, text: str) -> None:
        self._pending.discard(alert.key)
        self.notify(text, title="Acknowledge failed", severity="error", markup=False)
