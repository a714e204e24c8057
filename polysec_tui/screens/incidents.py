"""Incidents: the list (active ones by default) and one incident with everything linked
to it as a single timeline, notes, containment and closing with an outcome; and
:class:`AttachScreen`, which attaches what other screens have marked (withdrawals,
alerts, findings) to an active incident or to a new one, through :func:`attach`.

Data come from `services.incidents` (``read`` to look, ``review`` to change). Titles,
notes and linked events carry text officers and clients wrote: `safe_text` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Select, Static
from textual.worker import get_current_worker

from polysec_tui.errors import PolysecError
from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    StatusLine,
    describe_error,
    fill_table,
    safe_text,
)
from polysec_tui.services.clients import incidents
from polysec_tui.services.clients.incidents import (
    OUTCOMES,
    SEVERITIES,
    IncidentDetail,
    IncidentSummary,
    LinkResult,
)
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import printable

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
        Binding("r", "reload", "Refresh", id="incidents.refresh",
                tooltip="Load the incidents again"),
        Binding("a", "toggle_state", "Active/all", id="incidents.state",
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
        yield ConsoleTable(id="incidents-table", cursor_type="row", zebra_stripes=True,
                           copy_column="id")

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
        self.set_status(f"{len(found)} {scope}; Enter opens one, a switches")

    @on(DataTable.RowSelected, "#incidents-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        found = self.query_one("#incidents-table", ConsoleTable).item(self._found,
                                                                     event.cursor_row)
        if found is not None:
            self.app.push_screen(IncidentDetailScreen(found.id))


class IncidentDetailScreen(ConsoleScreen):
    TITLE_TEXT = "Incident"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="incident.back",
                tooltip="Close the note line, or back to the incidents"),
        Binding("n", "note", "Note", id="incident.note", tooltip="Add a note"),
        Binding("c", "contain", "Contained", id="incident.contain",
                tooltip="Mark the incident contained"),
        Binding("x", "close_incident", "Close", id="incident.close",
                tooltip="Close with an outcome"),
        Binding("r", "reload", "Refresh", id="incident.refresh",
                tooltip="Load the incident again"),
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
        yield ConsoleTable(id="incident-timeline", cursor_type="row", zebra_stripes=True,
                           copy_column="ref")
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

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="close-incident.cancel",
                tooltip="Close nothing"),
    ]
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


NEW_INCIDENT = "new"


@dataclass(frozen=True)
class Attached:
    incident: int
    results: list[LinkResult]

    @property
    def failed(self) -> list[LinkResult]:
        return [r for r in self.results if r.error is not None]


class AttachScreen(ModalScreen[Attached | None]):
    """Says how many things and which; the officer picks an active incident or opens a
    new one (a title and a severity); the links are made in one action. Dismisses with
    what was linked and what was refused (None when cancelled)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="attach.cancel", tooltip="Attach nothing"),
    ]
    DEFAULT_CSS = """
    AttachScreen { align: center middle; }
    AttachScreen #attach-box { width: 80; max-width: 100%; height: auto; padding: 0 1;
                               border: thick $warning; background: $surface; }
    AttachScreen #attach-new { height: auto; }
    AttachScreen #attach-new.-hidden { display: none; }
    AttachScreen #attach-error { color: $error; text-style: bold; }
    AttachScreen Horizontal { height: auto; margin: 1 0 0 0; }
    AttachScreen Button { margin: 0 1 0 0; }
    """

    class Listed(Message, bubble=False):
        def __init__(self, found: list[IncidentSummary] | None, error: str = "") -> None:
            super().__init__()
            self.found = found
            self.error = error

    class Done(Message, bubble=False):
        def __init__(self, attached: Attached | None, error: str = "") -> None:
            super().__init__()
            self.attached = attached
            self.error = error

    def __init__(self, runtime: Runtime, actor: Actor, things: list[tuple[str, str]],
                 what: str) -> None:
        super().__init__()
        self.runtime = runtime
        self.actor = actor
        self.things = things
        self.what = what  # "withdrawal", "alert", "finding": what the things are

    def compose(self) -> ComposeResult:
        refs = [ref for _kind, ref in self.things]
        listed = ", ".join(refs[:8]) + (f" and {len(refs) - 8} more" if len(refs) > 8 else "")
        with Vertical(id="attach-box") as box:
            box.border_title = "Attach to an incident"
            box.border_subtitle = "esc cancels"
            yield Static(Text.assemble(f"Attach {len(refs)} {self.what}(s): ",
                                       safe_text(listed, limit=400)))
            yield Select([("a new incident", NEW_INCIDENT)], value=NEW_INCIDENT,
                         allow_blank=False, id="attach-incident")
            with Vertical(id="attach-new"):
                yield Input(placeholder="title of the new incident", id="attach-title",
                            max_length=incidents.MAX_TITLE)
                yield Select([(s, s) for s in SEVERITIES], value="medium", allow_blank=False,
                             id="attach-severity")
            yield Static(Text(""), id="attach-error")
            with Horizontal():
                yield Button("Attach", id="attach-confirm", variant="warning")
                yield Button("Cancel", id="attach-cancel")

    def on_mount(self) -> None:
        self.query_one("#attach-incident", Select).focus()
        self.list_incidents()

    @work(thread=True, exclusive=True, exit_on_error=False, group="attach list")
    def list_incidents(self) -> None:
        try:
            message = self.Listed(incidents.list_incidents(self.runtime, self.actor))
        except PolysecError as error:
            message = self.Listed(None, describe_error(error))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_attach_screen_listed(self, message: AttachScreen.Listed) -> None:
        if message.found is None:
            self._error(message.error)
            return
        options: list[tuple[Any, str]] = [("a new incident", NEW_INCIDENT)]
        options += [(Text.assemble(f"#{i.id} {i.severity} {i.state}: ",
                                   safe_text(i.title, limit=50)), str(i.id))
                    for i in message.found]
        select = self.query_one("#attach-incident", Select)
        select.set_options(options)
        # The newest active incident is the likeliest home; a new one stays one key away.
        select.value = str(message.found[0].id) if message.found else NEW_INCIDENT
        if not message.found:  # nothing to choose: the new incident's title first
            self.query_one("#attach-title", Input).focus()

    @on(Select.Changed, "#attach-incident")
    def _chosen(self, event: Select.Changed) -> None:
        event.stop()
        self.query_one("#attach-new").set_class(event.value != NEW_INCIDENT, "-hidden")

    def _error(self, text: str) -> None:
        self.query_one("#attach-error", Static).update(safe_text(text))

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#attach-cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    @on(Button.Pressed, "#attach-confirm")
    @on(Input.Submitted, "#attach-title")
    def _confirm(self, event: Button.Pressed | Input.Submitted) -> None:
        event.stop()
        chosen = self.query_one("#attach-incident", Select).value
        title = self.query_one("#attach-title", Input).value.strip()
        severity = str(self.query_one("#attach-severity", Select).value)
        if chosen == NEW_INCIDENT and not title:
            self._error("a title for the new incident is required")
            self.query_one("#attach-title", Input).focus()
            return
        self._error("")
        self.query_one("#attach-confirm", Button).disabled = True
        self.run_attach(None if chosen == NEW_INCIDENT else int(str(chosen)), title,
                        severity)

    @work(thread=True, exclusive=True, exit_on_error=False, group="attach")
    def run_attach(self, incident_id: int | None, title: str, severity: str) -> None:
        try:
            if incident_id is None:
                incident_id, results = incidents.open_with_links(
                    self.runtime, self.actor, title=title, severity=severity,
                    things=self.things)
            else:
                results = incidents.link_many(self.runtime, self.actor, incident_id,
                                              self.things)
            message = self.Done(Attached(incident_id, results))
        except Exception as error:
            message = self.Done(None, describe_error(error))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_attach_screen_done(self, message: AttachScreen.Done) -> None:
        if message.attached is None:
            self._error(message.error)
            self.query_one("#attach-confirm", Button).disabled = False
            return
        self.dismiss(message.attached)


def attach(screen: Any, things: list[tuple[str, str]], what: str,
           after: Callable[[Attached], object] | None = None) -> None:
    """Push :class:`AttachScreen` for ``things`` from ``screen`` (a console screen or the
    alerts modal); the result is notified, each refusal on its own, then ``after`` runs
    (to unmark what was attached)."""
    if not things:
        screen.notify(f"no {what} to attach: mark some with space, or highlight one",
                      severity="warning", markup=False)
        return

    def done(attached: Attached | None) -> None:
        if attached is None:
            return
        linked = len(attached.results) - len(attached.failed)
        screen.notify(f"{linked} of {len(attached.results)} {what}(s) attached to incident "
                      f"{attached.incident}", title="attach", markup=False,
                      severity="warning" if attached.failed else "information")
        for result in attached.failed:
            screen.notify(printable(result.error or "", limit=300),
                          title=printable(f"Not attached: {result.ref}", limit=80),
                          severity="error", markup=False, timeout=15)
        if after is not None:
            after(attached)

    screen.app.push_screen(AttachScreen(screen.runtime, screen.actor, things, what), done)
