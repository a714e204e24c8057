"""Login anomalies: the findings of `polysec logins analyze`, to triage.

Order: newest day first and, within a day, the most severe first (then the newest), so
today's critical findings are on top and yesterday's stay below today's low ones. ``o``
switches to most severe first over the whole list. The kind filter (a select at the top,
``f``)
and the account filter (``AnomaliesScreen(account_id)``, opened from a timeline or a
withdrawal) are applied by `services.anomalies.list_anomalies`; the newest
:data:`LIMIT` findings are shown. The line under the table gives the highlighted
finding's full explanation; Enter opens the account's timeline.

Findings are grouped the way alerts are (``services.alerts``): one row per campaign, a
detector's findings on one account, or a stuffing or spraying source's findings on many
(a brute force of 100 failed logins is one row saying 100). Enter on a campaign row
expands it to its findings (and folds it again); enter on a finding opens the
account's timeline. ``c`` switches to one row per finding and back. The table itself
filters (``/``), sorts (``s``) and moves (``j k g G``) as every console table does.

``space`` marks a finding, or every finding of a campaign (``shift+down``/``shift+up``
mark and move); ``i`` attaches the marked findings (or the highlighted row's) to an
incident.

Explanations are built by the detectors from numbers, but are shown through
``safe_text`` like everything else that comes out of the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Select, Static

from polysec_tui.screens.findings import SEVERITY_RANK, SEVERITY_STYLES
from polysec_tui.screens.incidents import Attached, attach
from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    StatusLine,
    fill_table,
    safe_text,
)
from polysec_tui.services.logins import anomalies
from polysec_tui.services.logins.anomalies import KINDS, AnomalyView

LIMIT = 1000
ALL_KINDS = "all"
SOURCE_KINDS = ("credential_stuffing", "password_spraying")  # campaigns of one source


@dataclass(frozen=True)
class Campaign:
    """The findings of one detector on one subject (an account, or a source), newest
    first; shown as one row."""

    key: tuple[str, str]  # (kind, subject)
    subject: str  # the account's id, or the source ("203.0.113.5", "AS64500")
    findings: tuple[AnomalyView, ...]

    @property
    def newest(self) -> AnomalyView:
        return self.findings[0]

    @property
    def severity(self) -> str:
        return max((f.severity for f in self.findings),
                   key=lambda s: SEVERITY_RANK.get(s, 0))

    @property
    def accounts(self) -> int:
        return len({f.account_id for f in self.findings})


def campaigns(found: list[AnomalyView]) -> list[Campaign]:
    """Group ``found`` (in any order) into campaigns, each with its findings newest
    first; the campaigns in the order of their newest finding."""
    groups: dict[tuple[str, str], list[AnomalyView]] = {}
    subjects: dict[tuple[str, str], str] = {}
    for f in found:
        if f.kind in SOURCE_KINDS:
            subject = str(f.details.get("source") or f.source_ip or "?")
            key = (f.kind, f"source:{subject}")
        else:
            subject = f.account
            key = (f.kind, f"account:{f.account_id}")
        groups.setdefault(key, []).append(f)
        subjects[key] = subject
    return [Campaign(key, subjects[key],
                     tuple(sorted(members, key=lambda f: (f.at, f.id), reverse=True)))
            for key, members in groups.items()]


def _ids(item: Campaign | AnomalyView) -> set[int]:
    """The findings a row stands for."""
    return {f.id for f in item.findings} if isinstance(item, Campaign) else {item.id}


def triage_order(found: list[AnomalyView], *, severity_first: bool = False
                 ) -> list[AnomalyView]:
    """Newest day first, most severe first within a day, then newest; or, with
    ``severity_first``, most severe first and newest within a severity."""
    def key(a: AnomalyView) -> tuple[float, ...]:
        rank = SEVERITY_RANK.get(a.severity, 0)
        if severity_first:
            return (-rank, -a.at.timestamp(), -a.score)
        return (-a.at.toordinal(), -rank, -a.at.timestamp(), -a.score)
    return sorted(found, key=key)


def _campaign_order(found: list[Campaign], severity_first: bool) -> list[Campaign]:
    """The campaigns in triage order of their newest finding and highest severity."""
    def key(c: Campaign) -> tuple[float, ...]:
        rank = SEVERITY_RANK.get(c.severity, 0)
        at = c.newest.at
        if severity_first:
            return (-rank, -at.timestamp())
        return (-at.toordinal(), -rank, -at.timestamp())
    return sorted(found, key=key)


class AnomaliesScreen(ConsoleScreen):
    TITLE_TEXT = "Anomalies"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="anomalies.back",
                tooltip="Back to the screen that opened this list"),
        Binding("r", "reload", "Refresh", id="anomalies.refresh",
                tooltip="Load the findings again"),
        Binding("o", "toggle_order", "Order", id="anomalies.order",
                tooltip="Newest day first / most severe first"),
        Binding("f", "focus_kind", "Kind filter", id="anomalies.kind",
                tooltip="Show one kind of finding only"),
        Binding("c", "toggle_grouping", "Campaigns", id="anomalies.group",
                tooltip="One row per campaign (expand with enter), or one per finding"),
        Binding("space", "mark", "Mark", id="anomalies.mark",
                tooltip="Mark or unmark the highlighted finding (a campaign: all of its)"),
        Binding("shift+down", "mark(1, False)", "Mark down", id="anomalies.mark-down",
                show=False, tooltip="Mark the highlighted row and move down"),
        Binding("shift+up", "mark(-1, False)", "Mark up", id="anomalies.mark-up",
                show=False, tooltip="Mark the highlighted row and move up"),
        Binding("i", "attach", "Attach", id="anomalies.attach",
                tooltip="Attach the marked findings (or the highlighted row's) to an "
                        "incident"),
    ]
    DEFAULT_CSS = """
    AnomaliesScreen #an-bar { height: 3; }
    AnomaliesScreen #an-kind { width: 32; }
    AnomaliesScreen #an-status { width: 1fr; padding: 1 1 0 1; }
    AnomaliesScreen #an-status.-error { color: $error; text-style: bold; }
    AnomaliesScreen #an-table { height: 1fr; }
    AnomaliesScreen #an-detail { height: 4; padding: 0 1; background: $panel; }
    """

    def __init__(self, account_id: uuid.UUID | None = None) -> None:
        super().__init__()
        self.account_id = account_id
        self.kind: str | None = None
        self.severity_first = False
        self.found: list[AnomalyView] | None = None
        self.grouped = True
        self.expanded: set[tuple[str, str]] = set()
        # What each row shows: a campaign (grouped) or one finding.
        self.shown: list[Campaign | AnomalyView] = []
        self.marked: set[int] = set()  # finding ids
        self._focused_once = False

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="an-bar"):
            yield Select([("all kinds", ALL_KINDS), *((k, k) for k in KINDS)],
                         value=ALL_KINDS, allow_blank=False, id="an-kind")
            yield StatusLine(Text("loading…"), id="an-status")
        yield ConsoleTable(id="an-table", cursor_type="row", zebra_stripes=True,
                           copy_column="account")
        yield Static(Text(""), id="an-detail")

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        """Load the findings again."""
        self.set_status("loading…")
        self.load(self.kind)

    def action_toggle_order(self) -> None:
        """Newest day first, or most severe first."""
        self.severity_first = not self.severity_first
        self._show()

    def action_toggle_grouping(self) -> None:
        """One row per campaign, or one per finding."""
        self.grouped = not self.grouped
        self._show()

    def action_focus_kind(self) -> None:
        self.query_one("#an-kind", Select).focus()

    @on(Select.Changed, "#an-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        event.stop()
        kind = None if event.value in (ALL_KINDS, Select.BLANK) else str(event.value)
        if kind != self.kind:
            self.kind = kind
            self.action_reload()

    @work(thread=True, exclusive=True, exit_on_error=False, group="anomalies")
    def load(self, kind: str | None) -> None:
        self.deliver(lambda: anomalies.list_anomalies(
            self.runtime, self.officer, kind=kind, account_id=self.account_id, limit=LIMIT))

    def on_console_screen_loaded(self, message: ConsoleScreen.Loaded) -> None:
        if message.data is None:
            self.set_status(message.error, error=True)
            return
        self.found = message.data
        self._show()

    def _show(self, keep: int | None = None) -> None:
        if self.found is None:
            return
        ordered = triage_order(self.found, severity_first=self.severity_first)
        if self.grouped:
            shown: list[Campaign | AnomalyView] = []
            for campaign in _campaign_order(campaigns(ordered), self.severity_first):
                shown.append(campaign)
                if campaign.key in self.expanded:
                    shown.extend(campaign.findings)
            self.shown = shown
        else:
            self.shown = list(ordered)
        table = self.query_one("#an-table", ConsoleTable)
        # y copies the subject whole: the account, or a campaign's source.
        table.row_ids = [(item.subject if isinstance(item, Campaign) else item.account)
                         for item in self.shown]
        rows = [self._row(item) for item in self.shown]
        columns: list[tuple[str, str, int | None]] = [
            ("mark", " ", 1), ("at", "When (UTC)", 11), ("severity", "Severity", 8),
            ("kind", "Kind", max([4, *(r[3].cell_len for r in rows)])),
            ("count", "Count", 5),
            ("account", "Subject", max([7, *(r[5].cell_len for r in rows)])),
            ("source", "Source IP", max([9, *(r[6].cell_len for r in rows)]))]
        # The explanation takes the rest of the width (it is shown in full below); each
        # column is padded by one cell on both sides, plus the scrollbar.
        used = sum(width or 0 for _key, _label, width in columns) + 2 * (len(columns) + 1)
        columns.append(("why", "Explanation", max(20, table.size.width - 3 - used)))
        fill_table(table, columns, rows)
        if keep is not None and rows:
            table.move_cursor(row=min(keep, len(rows) - 1))
        if not self._focused_once:  # first load: the list, so that enter opens a timeline
            self._focused_once = True
            table.focus()
        order = "most severe" if self.severity_first else "newest day, most severe"
        scope = " of one account" if self.account_id is not None else ""
        more = f" (the newest {LIMIT})" if len(self.found) >= LIMIT else ""
        count = (f"{sum(isinstance(i, Campaign) for i in self.shown)} campaigns of "
                 f"{len(self.found)} findings" if self.grouped else f"{len(rows)} findings")
        marked = f" · {len(self.marked)} marked (i attach)" if self.marked else ""
        self.set_status(f"{count}{scope}{more}{marked} · {order} first · enter: "
                        + ("expand, or a finding's timeline · c: one row per finding"
                           if self.grouped else "timeline · c: campaigns"))
        self._detail(keep or 0)

    def _mark_sign(self, item: Campaign | AnomalyView) -> Text:
        ids = _ids(item)
        marked = len(ids & self.marked)
        return Text("✓" if marked == len(ids) else "~" if marked else " ")

    def _row(self, item: Campaign | AnomalyView) -> tuple[Text, ...]:
        if isinstance(item, Campaign):
            a = item.newest
            sign = "▾ " if item.key in self.expanded else "▸ "
            subject = (f"{item.subject} ({item.accounts} accounts)"
                       if item.key[1].startswith("source:") else item.subject)
            return (self._mark_sign(item), Text(f"{a.at:%m-%d %H:%M}"),
                    Text(item.severity, style=SEVERITY_STYLES.get(item.severity, "")),
                    Text(sign + a.kind), Text(f"{len(item.findings):,}", justify="right"),
                    safe_text(subject, limit=40), safe_text(a.source_ip or "-", limit=39),
                    safe_text(a.explanation, limit=200))
        a = item
        indent = "  " if self.grouped else ""
        return (self._mark_sign(a), Text(f"{indent}{a.at:%m-%d %H:%M}"),
                Text(a.severity, style=SEVERITY_STYLES.get(a.severity, "")),
                Text(indent + a.kind), Text(""), safe_text(a.account, limit=40),
                safe_text(a.source_ip or "-", limit=39), safe_text(a.explanation, limit=200))

    def _highlighted_item(self) -> Campaign | AnomalyView | None:
        item: Campaign | AnomalyView | None = self.query_one(
            "#an-table", ConsoleTable).item(self.shown)
        return item

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Marks are the table's keys: shift+down in the kind filter marked a row."""
        if action == "mark" and not isinstance(self.focused, ConsoleTable):
            return False
        return super().check_action(action, parameters)

    def action_mark(self, step: int = 1, toggle: bool = True) -> None:
        """Mark or unmark the highlighted finding, or every finding of the highlighted
        campaign (shift+arrows only mark), then move ``step`` rows."""
        item = self._highlighted_item()
        if item is None:
            self.app.bell()
            return
        ids = _ids(item)
        if toggle and ids <= self.marked:
            self.marked -= ids
        else:
            self.marked |= ids
        row = self.query_one("#an-table", DataTable).cursor_row
        self._show(keep=max(0, min(row + step, len(self.shown) - 1)))

    def action_attach(self) -> None:
        """Attach the marked findings (or the highlighted row's) to an incident."""
        item = self._highlighted_item()
        chosen = sorted(self.marked) or (sorted(_ids(item)) if item is not None else [])

        def attached(result: Attached) -> None:
            self.marked = {int(r.ref) for r in result.failed if int(r.ref) in self.marked}
            self._show(keep=self.query_one("#an-table", DataTable).cursor_row)

        attach(self, [("anomaly", str(i)) for i in chosen], "finding", attached)

    @on(DataTable.RowHighlighted, "#an-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    @on(DataTable.RowSelected, "#an-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        item = self.query_one("#an-table", ConsoleTable).item(self.shown, event.cursor_row)
        if item is None:
            return
        if isinstance(item, Campaign):
            self.expanded ^= {item.key}
            self._show(keep=event.cursor_row)
        else:
            self.open_account("timeline", item.account_id)

    def _detail(self, row: int) -> None:
        detail = self.query_one("#an-detail", Static)
        item = self.query_one("#an-table", ConsoleTable).item(self.shown, row)
        if item is None:
            detail.update(Text("no findings" if self.found is not None else ""))
            return
        a = item.newest if isinstance(item, Campaign) else item
        text = Text(no_wrap=False, overflow="fold")
        if isinstance(item, Campaign) and len(item.findings) > 1:
            first = item.findings[-1].at
            text.append(f"{len(item.findings):,} findings on {item.accounts:,} account(s), "
                        f"{first:%m-%d %H:%M} to {a.at:%m-%d %H:%M}; the newest: ",
                        style="bold")
        text.append(f"{a.at:%Y-%m-%d %H:%M:%S} ", style="bold")
        text.append(f"{a.kind} ({a.severity}, score {a.score:g}) ",
                    style=SEVERITY_STYLES.get(a.severity, ""))
        text.append("account ")
        text.append_text(safe_text(a.account, limit=64))
        text.append(" login ")
        text.append_text(safe_text(a.login, limit=64))
        text.append("\n")
        text.append_text(safe_text(a.explanation, limit=1000))
        detail.update(text)

