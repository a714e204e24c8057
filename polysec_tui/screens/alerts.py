"""The alerts modal: unacknowledged alerts (one per account, campaign source or failed
audit run, with its counts), acknowledged one or many at a time.

Opened from the dashboard (``a``). ``space`` marks rows (``shift+down``/``shift+up``
mark and move); ``i`` attaches the marked ones (or the highlighted one) to an incident;
``c`` (confirmed fraud), ``f``
(false positive) or ``b`` (benign) acknowledges the marked ones (or the highlighted one)
as far as they are shown, with that outcome and the note typed in the note line
(optional, the same for all; the reason of a benign outcome), after a confirmation
that lists them when more than one is marked, in a thread worker
(``services.alerts.acknowledge_many``: each alert one row and one audit entry in its own
transaction). Acknowledged rows leave the table; the ones that failed stay, and each
failure is listed (another officer who acknowledged first is a conflict). Every text
cell is untrusted platform text and goes through ``safe_text``.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from polysec_tui.errors import PolysecError
from polysec_tui.screens.incidents import Attached, attach
from polysec_tui.screens.widgets import (
    ConfirmScreen,
    ConsoleTable,
    ModalInput,
    describe_error,
    fill_table,
    move_cursor_to,
    safe_text,
)
from polysec_tui.services.monitoring import alerts
from polysec_tui.services.monitoring.alerts import Alert
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime


class AlertNote(ModalInput):
    """The acknowledgement's note, modal for keys (shift+down typed into it marked
    rows): so Esc, back to the list, is its own key."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "screen.to_list", "Back", id="alerts.note-back",
                tooltip="Back to the list of alerts (the note stays)"),
    ]


class AlertsScreen(ModalScreen[int]):
    """Returns how many alerts this officer acknowledged."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "acknowledge('confirmed_fraud')", "Confirmed fraud",
                id="alerts.confirmed",
                tooltip="Acknowledge the marked alerts (or the highlighted one): fraud"),
        Binding("f", "acknowledge('false_positive')", "False positive",
                id="alerts.false-positive",
                tooltip="Acknowledge the marked alerts (or the highlighted one): nothing "
                        "happened"),
        Binding("b", "acknowledge('benign')", "Benign", id="alerts.benign",
                tooltip="Acknowledge the marked alerts (or the highlighted one): real but "
                        "harmless (say why in the note)"),
        Binding("space", "mark", "Mark", id="alerts.mark",
                tooltip="Mark or unmark the highlighted alert"),
        Binding("shift+down", "mark(1, False)", "Mark down", id="alerts.mark-down",
                show=False, tooltip="Mark the highlighted alert and move down"),
        Binding("shift+up", "mark(-1, False)", "Mark up", id="alerts.mark-up", show=False,
                tooltip="Mark the highlighted alert and move up"),
        Binding("i", "attach", "Attach", id="alerts.attach",
                tooltip="Attach the marked alerts (or the highlighted one) to an incident"),
        Binding("z", "snooze", "Snooze 1 h", id="alerts.snooze",
                tooltip="Silence the highlighted alert for an hour; the note is the reason"),
        Binding("escape", "close", "Close", id="alerts.close",
                tooltip="Back to the dashboard"),
    ]
    DEFAULT_CSS = """
    AlertsScreen { align: center middle; }
    AlertsScreen #alerts-box { width: 90%; height: 80%; border: thick $error;
                               background: $surface; padding: 0 1; }
    AlertsScreen #alerts-help { height: auto; color: $text-muted; }
    AlertsScreen #alerts-note { margin: 0 0 1 0; }
    AlertsScreen #alerts-table { height: 1fr; }
    """

    def __init__(self, runtime: Runtime, actor: Actor, items: tuple[Alert, ...]) -> None:
        super().__init__()
        self.runtime = runtime
        self.actor = actor
        self.items = list(items)
        self.acknowledged = 0
        self.marked: set[str] = set()
        self._pending: set[str] = set()

    def compose(self) -> ComposeResult:
        with Vertical(id="alerts-box") as box:
            box.border_title = f"Alerts ({len(self.items)} unacknowledged)"
            yield Static(Text("space mark · acknowledge the marked (or highlighted) ones as "
                              "c confirmed fraud, f false positive, b benign · i attach to "
                              "an incident · z snooze 1 h (the note is the reason) · tab: "
                              "note (escape: back) · escape close"),
                         id="alerts-help")
            yield AlertNote(placeholder="note for the acknowledgement (optional; the same "
                            "for every marked alert)", max_length=alerts.NOTE_MAX,
                            id="alerts-note")
            table = ConsoleTable(id="alerts-table", cursor_type="row")
            yield table

    def on_mount(self) -> None:
        self._fill()
        self.query_one("#alerts-table", DataTable).focus()

    def _fill(self) -> None:
        table = self.query_one("#alerts-table", ConsoleTable)
        table.row_ids = [a.key for a in self.items]  # y copies the key `alerts ack` takes
        rows = [(Text("✓" if a.key in self.marked else " "), Text(f"{a.at:%m-%d %H:%M}"),
                 safe_text(a.severity), safe_text(a.title, limit=60),
                 safe_text(a.account or (a.ref if a.kind == "source" else ""), limit=40),
                 Text(f"{a.events:,}", justify="right"),
                 Text(f"{a.accounts:,}" if a.kind != "audit" else "", justify="right"),
                 safe_text(a.detail)) for a in self.items]
        fill_table(table, [("mark", " ", 1), ("at", "Last (UTC)", None),
                           ("severity", "Severity", None), ("alert", "Alert", None),
                           ("subject", "Account / source", None),
                           ("events", "Events", None), ("accounts", "Accounts", None),
                           ("detail", "Detail", None)], rows)
        box = self.query_one("#alerts-box")
        box.border_title = f"Alerts ({len(self.items)} unacknowledged)"

    def action_close(self) -> None:
        self.dismiss(self.acknowledged)

    def action_to_list(self) -> None:
        self.query_one("#alerts-table", DataTable).focus()

    def action_mark(self, step: int = 1, toggle: bool = True) -> None:
        """Mark or unmark the highlighted alert (shift+arrows only mark), then move
        ``step`` rows."""
        alert = self._highlighted()
        if alert is None:
            self.app.bell()
            return
        if toggle:
            self.marked ^= {alert.key}
        else:
            self.marked.add(alert.key)
        table = self.query_one("#alerts-table", DataTable)
        row = table.cursor_row
        self._fill()
        move_cursor_to(table, max(0, min(row + step, len(self.items) - 1)))

    def _chosen(self) -> list[Alert]:
        """The marked alerts, or else the highlighted one."""
        return [a for a in self.items if a.key in self.marked] or [
            a for a in (self._highlighted(),) if a is not None]

    def action_attach(self) -> None:
        """Attach the marked alerts (or the highlighted one) to an incident; they stay
        here until acknowledged."""
        def attached(result: Attached) -> None:
            self.marked = {r.ref for r in result.failed if r.ref in self.marked}
            if self.is_attached:
                self._fill()

        attach(self, [("alert", a.key) for a in self._chosen()], "alert", attached)

    def _highlighted(self) -> Alert | None:
        alert: Alert | None = self.query_one("#alerts-table", ConsoleTable).item(self.items)
        return alert

    def action_snooze(self) -> None:
        """Silence the highlighted alert for an hour, the note as the reason."""
        alert = self._highlighted()
        if alert is None or alert.key in self._pending:
            self.app.bell()
            return
        reason = self.query_one("#alerts-note", Input).value.strip()
        if not reason:
            self.notify("type the reason in the note line first (tab), then z",
                        severity="warning", markup=False)
            return
        self._pending.add(alert.key)
        self._snooze(alert, reason)

    @work(thread=True, exit_on_error=False, group="alerts")
    def _snooze(self, alert: Alert, reason: str) -> None:
        try:
            alerts.snooze(self.runtime, self.actor, alert.key, 60, reason)
            error = None
        except PolysecError as refused:
            error = str(refused)
        self.app.call_from_thread(
            self._done, [(alert.key, error)], f"Snoozed {alert.key} for 1 h")

    def action_acknowledge(self, outcome: str) -> None:
        """Acknowledge the marked alerts, or the highlighted one, with ``outcome``."""
        chosen = [a for a in self._chosen() if a.key not in self._pending]
        if not chosen:
            self.app.bell()
            return
        note = self.query_one("#alerts-note", Input).value

        def go(confirmed: bool | None = True) -> None:
            if confirmed:
                self._pending.update(a.key for a in chosen)
                self._acknowledge(chosen, note, outcome)

        if len(chosen) == 1:  # the highlighted one, in front of the officer: no question
            go()
            return
        lines = [safe_text(f"• {a.severity} {a.title} ({a.account or a.ref})", limit=90)
                 for a in chosen[:8]]
        if len(chosen) > 8:
            lines.append(Text(f"… and {len(chosen) - 8} more"))
        label = outcome.replace("_", " ")
        self.app.push_screen(ConfirmScreen(
            "Acknowledge the marked alerts",
            Text("\n").join([Text(f"Acknowledge {len(chosen)} alerts as {label}"
                                  + (", with the note typed" if note.strip() else "")
                                  + ":"), *lines]),
            f"Acknowledge {len(chosen)}"), go)

    @work(thread=True, exit_on_error=False, group="alerts")
    def _acknowledge(self, chosen: list[Alert], note: str, outcome: str) -> None:
        try:
            results = [(key, None if error is None else str(error)) for key, error in
                       alerts.acknowledge_many(self.runtime, self.actor,
                                               [(a.key, a.arrived) for a in chosen], note,
                                               outcome=outcome)]
        except PolysecError as refused:
            results = [(a.key, describe_error(refused)) for a in chosen]
        self.app.call_from_thread(self._done, results)

    def _done(self, results: list[tuple[str, str | None]], what: str = "") -> None:
        done = {key for key, error in results if error is None}
        failed = [(key, error) for key, error in results if error is not None]
        self._pending.difference_update(key for key, _error in results)
        self.acknowledged += len(done)  # the dashboard reloads when this is not 0
        if done:
            self.notify(what or f"Acknowledged {len(done)} alert(s)", markup=False,
                        timeout=3)
        for key, error in failed:
            self.notify(error or "", title=f"Not done: {key}", severity="warning",
                        markup=False, timeout=10)
        self.marked -= done
        self.items = [a for a in self.items if a.key not in done]
        if not self.is_attached:
            return
        if done:
            self.query_one("#alerts-note", Input).value = ""
        table = self.query_one("#alerts-table", DataTable)
        row = table.cursor_row
        self._fill()
        if self.items:
            move_cursor_to(table, min(row, len(self.items) - 1))
