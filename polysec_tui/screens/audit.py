"""Audit checks: pick checks, run them in a worker with progress, read the findings
grouped by severity (fail, warn, pass) with evidence and remediation, and the history of
past runs (Enter on a run shows its findings).

Everything goes through `services.audit_checks`, which checks ``audit.run`` (senior,
admin): an analyst sees the one-line refusal. Summaries and evidence are built by the
service from counts and ids, but may quote names an officer or the platform chose, so
they go through `safe_text` like any other text.
"""

from __future__ import annotations

import json
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, ProgressBar, SelectionList, Static
from textual.worker import get_current_worker

from polysec_tui.errors import InputError, RefusedError
from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    fill_table,
    move_cursor_to,
    safe_text,
)
from polysec_tui.services.operations import audit_checks
from polysec_tui.services.operations.audit_checks import AuditRunReport, Finding, RunSummary

ORDER = {"fail": 0, "warn": 1, "pass": 2}
STYLE = {"fail": "bold reverse red", "warn": "bold yellow", "pass": "green"}
FINDING_COLUMNS: list[tuple[str, str, int | None]] = [
    ("status", "Status", 6), ("check", "Check", None), ("summary", "Summary", None),
]
HISTORY_COLUMNS: list[tuple[str, str, int | None]] = [
    ("run", "Run", None), ("at", "Started (UTC)", None), ("result", "Result", 6),
    ("counts", "Fail/Warn/Pass", None), ("officer", "Officer", None),
]


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Most severe first; the registry's order within a severity."""
    return sorted(findings, key=lambda f: ORDER.get(f.status, 3))


class AuditChecksScreen(ConsoleScreen):
    TITLE_TEXT = "Audit checks"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run checks", id="audit.run",
                tooltip="Run the selected checks (all that apply when none is selected)"),
        Binding("a", "toggle_all", "All/none", id="audit.toggle",
                tooltip="Select every check, or none"),
        Binding("h", "history", "History", id="audit.history",
                tooltip="Reload the past runs; Enter on one shows its findings"),
    ]
    DEFAULT_CSS = """
    AuditChecksScreen #audit-top { height: 9; }
    AuditChecksScreen #audit-checks { width: 40; height: 9; border: round $primary; }
    AuditChecksScreen #audit-history { width: 1fr; height: 9; border: round $primary; }
    AuditChecksScreen #audit-progress-row { height: 1; padding: 0 1; }
    AuditChecksScreen #audit-run-status { width: 1fr; }
    AuditChecksScreen #audit-progress { display: none; }
    AuditChecksScreen.-ran #audit-progress { display: block; }
    AuditChecksScreen #audit-run-status.-fail { color: $error; text-style: bold; }
    AuditChecksScreen #audit-findings { height: 1fr; }
    AuditChecksScreen #audit-detail { height: 5; padding: 0 1; border-top: solid $primary; }
    """

    class Ran(Message, bubble=False):
        def __init__(self, report: AuditRunReport | None, refusal: str = "") -> None:
            super().__init__()
            self.report = report
            self.refusal = refusal

    class Progressed(Message, bubble=False):
        def __init__(self, name: str, done: int, total: int) -> None:
            super().__init__()
            self.name = name
            self.done = done
            self.total = total

    class HistoryLoaded(Message, bubble=False):
        def __init__(self, runs: list[RunSummary] | None, refusal: str = "") -> None:
            super().__init__()
            self.runs = runs
            self.refusal = refusal

    class FindingsLoaded(Message, bubble=False):
        def __init__(self, run_id: int, findings: list[Finding]) -> None:
            super().__init__()
            self.run_id = run_id
            self.findings = findings

    def __init__(self) -> None:
        super().__init__()
        self._findings: list[Finding] = []
        self._runs: list[RunSummary] = []

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="audit-top"):
            checks = SelectionList[str](
                *[(name, name, True) for name in audit_checks.applicable(self.runtime)],
                id="audit-checks")
            checks.border_title = "Checks"
            yield checks
            history = ConsoleTable(id="audit-history", cursor_type="row")
            history.border_title = "Past runs"
            yield history
        with Horizontal(id="audit-progress-row"):
            yield Static(Text("r runs the selected checks"), id="audit-run-status")
            # Shown from the first run on: an idle, indeterminate bar would animate (and
            # redraw over a slow SSH link) for nothing.
            yield ProgressBar(total=1, show_eta=False, id="audit-progress")
        with Vertical():
            yield ConsoleTable(id="audit-findings", cursor_type="row", zebra_stripes=True)
            yield Static(Text(""), id="audit-detail")

    def on_mount(self) -> None:
        self.query_one("#audit-findings", DataTable).focus()
        self.load_history()

    # ---------------------------------------------------------------------- actions

    def action_run(self) -> None:
        """Run the selected checks in a worker."""
        names = list(self.query_one("#audit-checks", SelectionList).selected)
        self._status(f"running {len(names)} checks…")
        self.add_class("-ran")
        self.query_one("#audit-progress", ProgressBar).update(total=len(names), progress=0)
        self.run_checks(names)

    def action_toggle_all(self) -> None:
        checks: SelectionList[str] = self.query_one("#audit-checks", SelectionList)
        if checks.selected:
            checks.deselect_all()
        else:
            checks.select_all()

    def action_history(self) -> None:
        self.load_history()
        self.query_one("#audit-history", DataTable).focus()

    # ---------------------------------------------------------------------- workers

    @work(thread=True, exclusive=True, exit_on_error=False, group="audit run")
    def run_checks(self, names: list[str]) -> None:
        assert self.actor is not None

        def progress(name: str, done: int, total: int) -> None:
            self.post_message(self.Progressed(name, done, total))

        try:
            message = self.Ran(audit_checks.run(self.runtime, self.actor, names,
                                                progress=progress))
        except (RefusedError, InputError) as refused:
            message = self.Ran(None, str(refused))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    @work(thread=True, exclusive=True, exit_on_error=False, group="audit history")
    def load_history(self) -> None:
        assert self.actor is not None
        try:
            message = self.HistoryLoaded(audit_checks.history(self.runtime, self.actor))
        except RefusedError as refused:
            message = self.HistoryLoaded(None, str(refused))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    @work(thread=True, exclusive=True, exit_on_error=False, group="audit findings")
    def load_findings(self, run_id: int) -> None:
        assert self.actor is not None
        found = audit_checks.findings_of(self.runtime, self.actor, run_id)
        if not get_current_worker().is_cancelled:
            self.post_message(self.FindingsLoaded(run_id, found))

    # ---------------------------------------------------------------------- messages

    def on_audit_checks_screen_progressed(self, message: Progressed) -> None:
        self.query_one("#audit-progress", ProgressBar).update(total=message.total,
                                                              progress=message.done)
        if message.name:
            self._status(f"running {message.name} ({message.done + 1}/{message.total})…")

    def on_audit_checks_screen_ran(self, message: Ran) -> None:
        report = message.report
        if report is None:
            self._status(message.refusal, fail=True)
            return
        counts = {s: sum(f.status == s for f in report.findings) for s in ORDER}
        self._status(f"run {report.run_id}: {report.result.upper()} — {counts['fail']} fail, "
                     f"{counts['warn']} warn, {counts['pass']} pass",
                     fail=report.result == "fail")
        self._show_findings(report.findings)
        self.load_history()

    def on_audit_checks_screen_history_loaded(self, message: HistoryLoaded) -> None:
        if message.runs is None:
            self._status(message.refusal, fail=True)
            return
        self._runs = message.runs
        table: DataTable[Text] = self.query_one("#audit-history", DataTable)
        fill_table(table, HISTORY_COLUMNS, [
            (Text(str(r.run_id)), Text(f"{r.started_at:%m-%d %H:%M}"),
             Text(r.result or "-", style=STYLE.get(r.result or "", "")),
             Text(f"{r.counts['fail']}/{r.counts['warn']}/{r.counts['pass']}"),
             safe_text(r.officer or "-", limit=32))
            for r in message.runs
        ])

    def on_audit_checks_screen_findings_loaded(self, message: FindingsLoaded) -> None:
        self._status(f"run {message.run_id}: {len(message.findings)} findings")
        self._show_findings(message.findings)

    @on(DataTable.RowSelected, "#audit-history")
    def _open_run(self, event: DataTable.RowSelected) -> None:
        run = self.query_one("#audit-history", ConsoleTable).item(self._runs,
                                                                   event.cursor_row)
        if run is not None:
            self.load_findings(run.run_id)
            self.query_one("#audit-findings", DataTable).focus()

    @on(DataTable.RowHighlighted, "#audit-findings")
    def _show_detail(self, event: DataTable.RowHighlighted) -> None:
        finding = self.query_one("#audit-findings", ConsoleTable).item(self._findings,
                                                                        event.cursor_row)
        if finding is not None:
            evidence = json.dumps(finding.evidence, sort_keys=True, default=str)
            self.query_one("#audit-detail", Static).update(Text.assemble(
                (f"{finding.check}: ", "bold"), safe_text(finding.summary, limit=300), "\n",
                ("fix: ", "bold"), safe_text(finding.remediation, limit=300), "\n",
                ("evidence: ", "bold"), safe_text(evidence, limit=600)))

    # ---------------------------------------------------------------------- helpers

    def _show_findings(self, findings: list[Finding]) -> None:
        self._findings = sort_findings(findings)
        table: DataTable[Text] = self.query_one("#audit-findings", DataTable)
        fill_table(table, FINDING_COLUMNS, [
            (Text(f.status.upper(), style=STYLE.get(f.status, "")),
             safe_text(f.check, limit=48), safe_text(f.summary, limit=300))
            for f in self._findings
        ])
        if self._findings:
            move_cursor_to(table, 0)

    def _status(self, text: str, *, fail: bool = False) -> None:
        status = self.query_one("#audit-run-status", Static)
        status.update(safe_text(text))
        status.set_class(fail, "-fail")
