"""Demo scenarios: the attacks `polysec demo` injected into its database, so a new user
knows what to look for (the same list the demo prints when its console closes).

Opened from the dashboard with ``D``, which exists only on the demo database
(`synthetic.demo.scenarios` refuses any other). Enter opens the victim's timeline;
every cell is shown through ``safe_text``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    StatusLine,
    fill_table,
    safe_text,
)
from polysec_tui.services.clients import accounts
from polysec_tui.synthetic import demo


class DemoScenariosScreen(ConsoleScreen):
    TITLE_TEXT = "Demo scenarios"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="scenarios.back", tooltip="Back to the dashboard"),
    ]
    DEFAULT_CSS = """
    DemoScenariosScreen #scenarios-status { height: 1; padding: 0 1; }
    DemoScenariosScreen #scenarios-table { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, Any]] = []

    def compose_body(self) -> ComposeResult:
        yield StatusLine(Text("loading…"), id="scenarios-status")
        yield ConsoleTable(id="scenarios-table", cursor_type="row", zebra_stripes=True,
                           copy_column="account")

    def on_mount(self) -> None:
        self.query_one("#scenarios-table", ConsoleTable).focus()
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="demo scenarios")
    def load(self) -> None:
        self.deliver(lambda: demo.scenarios(self.runtime))

    def on_console_screen_loaded(self, message: ConsoleScreen.Loaded) -> None:
        if message.data is None:
            self.set_status(message.error, error=True)
            return
        self.found = message.data
        fill_table(self.query_one("#scenarios-table", ConsoleTable), [
            ("at", "Started (UTC)", None), ("kind", "Attack", None),
            ("account", "Account", None), ("ip", "Source IP", None),
            ("events", "Events", None), ("what", "What happened", None),
        ], [(Text(f"{s['started_at']:%m-%d %H:%M}"), safe_text(s["kind"]),
             safe_text(s["account"] or "-", limit=40), safe_text(s["source_ip"] or "-"),
             Text(f"{s['events']:,}", justify="right"),
             safe_text(s["description"], limit=300)) for s in self.found])
        self.set_status(f"{len(self.found)} attacks injected into this demo; enter opens "
                        "the victim's timeline (the dashboard, alerts, anomalies and the "
                        "queue should each show them)")

    @on(DataTable.RowSelected, "#scenarios-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        event.stop()
        found = self.query_one("#scenarios-table", ConsoleTable).item(self.found,
                                                                       event.cursor_row)
        if found is not None and found["account"]:
            self.open_victim(found["account"])

    @work(thread=True, exclusive=True, exit_on_error=False, group="scenario account")
    def open_victim(self, external_id: str) -> None:
        summary = accounts.summary(self.runtime, self.officer, external_id)
        self.app.call_from_thread(self.open_account, "timeline", summary.id)
