"""Login anomalies: the findings of `polysec logins analyze`, to triage.

Order: newest day first and, within a day, the most severe first (then the newest), so
today's critical findings are on top and yesterday's stay below today's low ones. ``s``
switches to most severe first over the whole list. The kind filter (a select at the top)
and the account filter (``AnomaliesScreen(account_id)``, opened from a timeline or a
withdrawal) are applied by `services.anomalies.list_anomalies`; the newest
:data:`LIMIT` findings are shown. The line under the table gives the highlighted
finding's full explanation; Enter opens the account's timeline.

Explanations are built by the detectors from numbers, but are shown through
``safe_text`` like everything else that comes out of the database.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Select, Static

from polysec_tui.screens.findings import SEVERITY_RANK, SEVERITY_STYLES
from polysec_tui.screens.widgets import ConsoleScreen, StatusLine, fill_table, safe_text
from polysec_tui.services.logins import anomalies
from polysec_tui.services.logins.anomalies import KINDS, AnomalyView

LIMIT = 1000
ALL_KINDS = "all"


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


class AnomaliesScreen(ConsoleScreen):
    TITLE_TEXT = "Anomalies"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="anomalies.back",
                tooltip="Back to the screen that opened this list"),
        Binding("r", "reload", "Refresh", id="anomalies.refresh",
                tooltip="Load the findings again"),
        Binding("s", "toggle_order", "Order", id="anomalies.order",
                tooltip="Newest day first / most severe first"),
        Binding("k", "focus_kind", "Kind filter", id="anomalies.kind",
                tooltip="Show one kind of finding only"),
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
        self.shown: list[AnomalyView] = []
        self._focused_once = False

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="an-bar"):
            yield Select([("all kinds", ALL_KINDS), *((k, k) for k in KINDS)],
                         value=ALL_KINDS, allow_blank=False, id="an-kind")
            yield StatusLine(Text("loading…"), id="an-status")
        yield DataTable(id="an-table", cursor_type="row", zebra_stripes=True)
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

    def _show(self) -> None:
        if self.found is None:
            return
        self.shown = triage_order(self.found, severity_first=self.severity_first)
        table: DataTable[Text] = self.query_one("#an-table", DataTable)
        rows = [
            (Text(f"{a.at:%m-%d %H:%M}"),
             Text(a.severity, style=SEVERITY_STYLES.get(a.severity, "")),
             Text(a.kind),
             safe_text(a.account, limit=24),
             safe_text(a.source_ip or "-", limit=39),
             safe_text(a.explanation, limit=200))
            for a in self.shown
        ]
        columns: list[tuple[str, str, int | None]] = [
            ("at", "When (UTC)", 11), ("severity", "Severity", 8),
            ("kind", "Kind", max([4, *(r[2].cell_len for r in rows)])),
            ("account", "Account", max([7, *(r[3].cell_len for r in rows)])),
            ("source", "Source IP", max([9, *(r[4].cell_len for r in rows)]))]
        # The explanation takes the rest of the width (it is shown in full below); each
        # column is padded by one cell on both sides, plus the scrollbar.
        used = sum(width or 0 for _key, _label, width in columns) + 2 * (len(columns) + 1)
        columns.append(("why", "Explanation", max(30, table.size.width - 3 - used)))
        fill_table(table, columns, rows)
        if not self._focused_once:  # first load: the list, so that enter opens a timeline
            self._focused_once = True
            table.focus()
        order = "most severe" if self.severity_first else "newest day, most severe"
        scope = " of one account" if self.account_id is not None else ""
        more = f" (the newest {LIMIT})" if len(self.found) >= LIMIT else ""
        self.set_status(f"{len(rows)} findings{scope}{more} · {order} first · "
                     "enter: timeline")
        self._detail(0)

    @on(DataTable.RowHighlighted, "#an-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    @on(DataTable.RowSelected, "#an-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.shown):
            finding = self.shown[event.cursor_row]
            self.open_account("timeline", finding.account_id)

    def _detail(self, index: int) -> None:
        detail = self.query_one("#an-detail", Static)
        if not 0 <= index < len(self.shown):
            detail.update(Text("no findings" if self.found is not None else ""))
            return
        a = self.shown[index]
        text = Text(no_wrap=False, overflow="fold")
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

