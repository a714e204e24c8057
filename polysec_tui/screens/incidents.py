"""Incidents: the list (active ones by default) and one incident with everything linked
to it as a single timeline, notes, containment and closing with an outcome.

Data come from `services.incidents` (``read`` to look, ``review`` to change). Titles,
notes and linked events carry text officers and clients wrote: `safe_text` only.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Select, Static

from polysec_tui.screens.widgets import ConsoleScreen, StatusLine, fill_table, safe_text
from polysec_tui.services.clients import incidents
from polysec_tui.services.clients.incidents import OUTCOMES, IncidentDetail, IncidentSummary

SEVERITY_STYLE = {"critical": "bold reverse red", "high": "bold red", "medium": "yellow",
                  "low": ""}
LIST_COLUMNS: list[tuple[str, str, int | None]] = [
    ("id", "#", None), ("opened", "Opened (UTC)", None), ("severity", "Severity", 8),
    ("state", "State", 9), ("owner", "Owner", None), ("accounts", "Accounts", None),
    ("title", "Title", None),
]
TIMELINE_COLUMNS: list[tuple[str, str, int | None]] = [
    ("at", "Time (UTC)", None), ("kind", "Kind", None), ("ref", "Ref", None),
    ("officer", "Officer", None), ("text", "What", None),
]


class IncidentsScreen(ConsoleScreen):
    TITLE_TEXT = "Incidents"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reload", "Refresh", id="incidents.refresh"),
        Binding("s", "toggle_state", "Active/all", id="incidents.state",
                tooltip="Show only open and contained incidents, or every one"),
    ]
    DEFAULT_CSS = """
    IncidentsScreen #incidents-status { height: 1; padding: 0 1; }
    IncidentsScreen #incidents-table { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.show_all = False
        self._found: list[IncidentSummary] = []

    def compose_body(self) -> ComposeResult:
        yield StatusLine(Text("loading…"), id="incidents-status")
        yield DataTable(id="incidents-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#incidents-table", DataTable).focus()
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load(None if self.show_all else "active")

    def action_toggle_state(self) -> None:
        self.show_all = not self.show_all
        self.action_reload()

    @work(thread=True, exclusive=True, exit_on_error=False, group="incidents")
    def load(self, state: str | None) -> None:
        self.deliver(lambda: incidents.list_incidents(self.runtime, self.officer, state=state))

    def on_console_screen_loaded(self, message: ConsoleScreen.Loaded) -> None:
        if message.data is None:
            self.set_status(message.error, error=True)
            return
        found: list[IncidentSummary] = message.data
        self._found = found
        fill_table(self.query_one("#incidents-table", DataTable), LIST_COLUMNS, [
            (Text(str(i.id)), Text(f"{i.opened_at:%m-%d %H:%M}"),
             Text(i.severity, style=SEVERITY_STYLE.get(i.severity, "")), Text(i.state),
             safe_text(i.owner or "-", limit=24), safe_text(", ".join(i.accounts), limit=40),
             safe_text(i.title, limit=120))
            for i in found
        ])
        scope = "all incidents" if self.show_all else "open and contained incidents"
        self.set_status(f"{len(found)} {scope}; Enter opens one, s switches")

    @on(DataTable.RowSelected, "#incidents-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self._found):
            self.app.push_screen(IncidentDetailScreen(self._found[event.cursor_row].id))


class IncidentDetailScreen(ConsoleScreen):
    TITLE_TEXT = "Incident"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="incident.back"),
        Binding("n", "note", "Note", id="incident.note", tooltip="Add a note"),
        Binding("c", "contain", "Contained", id="incident.contain",
                tooltip="Mark the incident contained"),
        Binding("x", "close_incident", "Close", id="incident.close",
                tooltip="Close with an outcome"),
        Binding("r", "reload", "Refresh", id="incident.refresh"),
    ]
    DEFAULT_CSS = """
    IncidentDetailScreen #incident-head { height: 2; padding: 0 1; }
    IncidentDetailScreen #incident-timeline { height: 1fr; }
    IncidentDetailScreen #incident-note { display: none; }
    IncidentDetailScreen #incident-note.-open { display: block; }
    IncidentDetailScreen #incident-error { height: auto; color: $error; padding: 0 1; }
    """

    def __init__(self, incident_id: int) -> None:
        super().__init__()
        self.incident_id = incident_id

    def compose_body(self) -> ComposeResult:
        yield Static(Text("loading…"), id="incident-head")
        yield DataTable(id="incident-timeline", cursor_type="row", zebra_stripes=True)
        yield Input(placeholder="note, then enter (esc cancels)", id="incident-note",
                    max_length=incidents.MAX_NOTE)
        yield StatusLine(Text(""), id="incident-error")

    def on_mount(self) -> None:
        self.query_one("#incident-timeline", DataTable).focus()
        self.action_reload()

    def action_back(self) -> None:
        note = self.query_one("#incident-note", Input)
        if note.has_class("-open"):
            note.remove_class("-open")
            self.query_one("#incident-timeline", DataTable).focus()
            return
        self.app.pop_screen()

    def action_reload(self) -> None:
        self.load()

    def action_note(self) -> None:
        note = self.query_one("#incident-note", Input)
        note.add_class("-open")
        note.focus()

    def action_contain(self) -> None:
        self.change("contained", None)

    def action_close_incident(self) -> None:
        def chosen(outcome: str | None) -> None:
            if outcome:
                self.change("closed", outcome)

        self.app.push_screen(CloseIncidentScreen(), chosen)

    @on(Input.Submitted, "#incident-note")
    def _add_note(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        event.input.value = ""
        event.input.remove_class("-open")
        self.query_one("#incident-timeline", DataTable).focus()
        if text:
            self.write_note(text)

    @work(thread=True, exclusive=True, exit_on_error=False, group="incident")
    def load(self) -> None:
        self.deliver(lambda: incidents.show(self.runtime, self.officer, self.incident_id))

    @work(thread=True, exit_on_error=False, group="incident change")
    def write_note(self, text: str) -> None:
        def noted() -> IncidentDetail:
            incidents.note(self.runtime, self.officer, self.incident_id, text)
            return incidents.show(self.runtime, self.officer, self.incident_id)

        self.deliver(noted)

    @work(thread=True, exit_on_error=False, group="incident change")
    def change(self, state: str, outcome: str | None) -> None:
        def changed() -> IncidentDetail:
            incidents.set_state(self.runtime, self.officer, self.incident_id, state,
                                outcome=outcome)
            return incidents.show(self.runtime, self.officer, self.incident_id)

        self.deliver(changed)

    def on_console_screen_loaded(self, message: ConsoleScreen.Loaded) -> None:
        self.set_status(message.error, error=bool(message.error))
        if message.data is None:
            return
        detail: IncidentDetail = message.data
        s = detail.summary
        self.query_one("#incident-head", Static).update(Text.assemble(
            (f"#{s.id} ", "bold"), safe_text(s.title, limit=150), "\n",
            (s.severity, SEVERITY_STYLE.get(s.severity, "")),
            f" · {s.state}{f' ({s.outcome})' if s.outcome else ''} · owner ",
            safe_text(s.owner or "-", limit=24), f" · {s.source} · accounts ",
            safe_text(", ".join(s.accounts) or "-", limit=60)))
        fill_table(self.query_one("#incident-timeline", DataTable), TIMELINE_COLUMNS, [
            (Text(f"{t.at:%m-%d %H:%M:%S}"), Text(t.kind), safe_text(t.ref, limit=24),
             safe_text(t.officer or "", limit=24), safe_text(t.text, limit=200))
            for t in detail.timeline
        ])


class CloseIncidentScreen(ModalScreen[str | None]):
    """Pick the outcome that closes the incident."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    CloseIncidentScreen { align: center middle; }
    CloseIncidentScreen #close-box { width: 50; height: auto; padding: 0 1;
                                     border: thick $warning; background: $surface; }
    CloseIncidentScreen Horizontal { height: auto; margin: 1 0 0 0; }
    CloseIncidentScreen Button { margin: 0 1 0 0; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="close-box") as box:
            box.border_title = "Close incident"
            yield Select([(o.replace("_", " "), o) for o in OUTCOMES], prompt="outcome",
                         id="close-outcome")
            with Horizontal():
                yield Button("Close incident", id="close-confirm", variant="warning")
                yield Button("Cancel", id="close-cancel")

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#close-cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#close-confirm")
    def _confirm(self, event: Button.Pressed) -> None:
        value = self.query_one("#close-outcome", Select).value
        if isinstance(value, str):
            self.dismiss(value)
