"""The officer audit log: the newest 200 entries (filtered by officer and action) and a
check of the whole hash chain.

Both go through `services.officers.auditlog.recent` / `verify_for`, which check the permission
``auditlog.read`` (senior, admin): an analyst sees the service's one-line refusal on this
screen. Every cell is untrusted text (officer names, targets and details can carry what
a client typed) and goes through `safe_text`.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from polysec_tui.errors import RefusedError
from polysec_tui.screens.widgets import ConsoleScreen, ConsoleTable, fill_table, safe_text
from polysec_tui.services.auditchain import AuditEntryView, VerifyReport
from polysec_tui.services.officers import auditlog

ROWS = 200
COLUMNS: list[tuple[str, str, int | None]] = [
    ("seq", "Seq", None), ("at", "Time (UTC)", None), ("officer", "Officer", None),
    ("action", "Action", None), ("target", "Target", None), ("details", "Details", None),
]


class AuditLogScreen(ConsoleScreen):
    TITLE_TEXT = "Audit log"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reload", "Refresh", id="auditlog.refresh",
                tooltip="Load the newest entries again"),
        Binding("v", "verify", "Verify chain", id="auditlog.verify",
                tooltip="Check the whole hash chain and report the first bad entry"),
        Binding("slash", "filter", "Filter", id="auditlog.filter",
                tooltip="Type an officer or an action to show only their entries"),
    ]
    DEFAULT_CSS = """
    AuditLogScreen #audit-filters { height: 3; }
    AuditLogScreen #audit-filters Input { width: 1fr; }
    AuditLogScreen #audit-status { height: 1; padding: 0 1; }
    AuditLogScreen #audit-status.-broken { color: $error; text-style: bold reverse; }
    AuditLogScreen #audit-status.-refused { color: $error; text-style: bold; }
    AuditLogScreen #audit-log { height: 1fr; }
    """

    class Loaded(Message, bubble=False):
        def __init__(self, entries: list[AuditEntryView] | None, refusal: str = "") -> None:
            super().__init__()
            self.entries = entries
            self.refusal = refusal

    class Verified(Message, bubble=False):
        def __init__(self, report: VerifyReport | None, refusal: str = "") -> None:
            super().__init__()
            self.report = report
            self.refusal = refusal

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="audit-filters"):
            yield Input(placeholder="officer (exact)", id="audit-officer", max_length=64)
            yield Input(placeholder="action (exact, e.g. pii.reveal)", id="audit-action",
                        max_length=64)
        yield Static(Text("loading…"), id="audit-status")
        # The log is filtered in its query (officer, action): / goes to those fields.
        yield ConsoleTable(id="audit-log", cursor_type="row", zebra_stripes=True,
                           searchable=False)

    def on_mount(self) -> None:
        self.query_one("#audit-log", DataTable).focus()
        self.action_reload()

    def action_filter(self) -> None:
        """Into the filter fields (the officer first)."""
        self.query_one("#audit-officer", Input).focus()

    @on(Input.Submitted)
    def _filter(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_reload()

    def action_reload(self) -> None:
        """Load the newest entries that match the filters."""
        officer = self.query_one("#audit-officer", Input).value.strip()
        action = self.query_one("#audit-action", Input).value.strip()
        self.load(officer or None, action or None)

    def action_verify(self) -> None:
        """Verify the chain (the whole table, in a worker)."""
        self._status("verifying the chain…")
        self.verify()

    @work(thread=True, exclusive=True, exit_on_error=False, group="audit log")
    def load(self, officer: str | None, action: str | None) -> None:
        assert self.actor is not None
        try:
            message = self.Loaded(auditlog.recent(self.runtime, self.actor, ROWS,
                                                  officer=officer, action=action))
        except RefusedError as refused:
            message = self.Loaded(None, str(refused))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    @work(thread=True, exclusive=True, exit_on_error=False, group="audit verify")
    def verify(self) -> None:
        assert self.actor is not None
        try:
            message = self.Verified(auditlog.verify_for(self.runtime, self.actor))
        except RefusedError as refused:
            message = self.Verified(None, str(refused))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_audit_log_screen_loaded(self, message: AuditLogScreen.Loaded) -> None:
        table: DataTable[Text] = self.query_one("#audit-log", DataTable)
        entries = message.entries or []
        fill_table(table, COLUMNS, [
            (Text(str(entry.seq)),
             Text(f"{entry.at:%m-%d %H:%M:%S}"),
             safe_text(entry.officer, limit=64),
             safe_text(entry.action, limit=64),
             safe_text(entry.target or "", limit=80),
             safe_text(auditlog.details_summary(entry.details)))
            for entry in entries
        ])
        if message.entries is None:
            self._status(message.refusal, "-refused")
            return
        shown = len(message.entries)
        self._status(f"{shown} newest entr{'y' if shown == 1 else 'ies'}"
                     f"{' (limit)' if shown == ROWS else ''}; v verifies the chain")

    def on_audit_log_screen_verified(self, message: AuditLogScreen.Verified) -> None:
        report = message.report
        if report is None:
            self._status(message.refusal, "-refused")
        elif report.ok:
            self._status(f"chain ok: {report.entries_checked} entries, "
                         f"head seq {report.head_seq}")
        else:
            self._status(f"chain BROKEN at seq {report.first_bad_seq}: {report.reason}",
                         "-broken")

    def _status(self, text: str, kind: str = "") -> None:
        status = self.query_one("#audit-status", Static)
        status.update(safe_text(text))
        status.set_class(kind == "-broken", "-broken")
        status.set_class(kind == "-refused", "-refused")
