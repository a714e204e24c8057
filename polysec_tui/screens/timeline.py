"""One account's story: the merged timeline, logins per day and a map of login places.

``TimelineScreen(account_id)`` is opened from the anomalies screen (Enter), the account
screen (``t``) and the withdrawal detail screen; as a destination of its own (no
account) it asks for an account id or e-mail first. Everything is loaded in one thread
worker from `services.timeline` (`account_timeline`, `logins_per_day`,
`located_logins`) and comes back as plain data.

- The events table is chronological (oldest first, the cursor on the newest); each login
  carries badges for the anomalies found on it (kind and severity letter, so the badge
  reads without colour). The line under the table explains the highlighted event: its
  full summary, the user agent and device, each finding's explanation.
- The day chart stacks successes (``█``) and failures (``▒``) per UTC day.
- The map joins consecutive successful logins; an impossible trip is red with ``!`` at
  both ends (`screens.charts`).
- ``a`` shows the account's findings and ``f`` its 2FA reset request (the app opens
  them: `ConsoleScreen.open_account`).
- Platform text (cities, user agents, summaries built from them) is only ever shown
  through ``safe_text``.

The screen is built with the account id alone (or none); the runtime, clock and officer
come from the running console (`ConsoleScreen`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from polysec_tui.screens.charts import day_chart, location_map
from polysec_tui.screens.findings import badge, badges
from polysec_tui.screens.protection import PROTECTION_BINDINGS, ProtectsAccount
from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    StatusLine,
    fill_table,
    move_cursor_to,
    safe_text,
)
from polysec_tui.services.logins import timeline
from polysec_tui.services.logins.timeline import DayCount, Ident, LocatedLogin, Timeline

if TYPE_CHECKING:
    pass

FINDINGS_WIDTH = 30
EVENT_LABELS = {"login": "login", "login_failed": "login FAILED",
                "security_event": "security", "withdrawal": "withdrawal",
                "review": "review", "twofa_reset": "2FA reset",
                "officer_action": "officer"}
class DayChart(Widget):
    """Logins per day; redrawn at its own size, and only when the days changed."""

    DEFAULT_CSS = "DayChart { height: 1fr; }"
    days: list[DayCount] = []

    def show(self, days: list[DayCount]) -> None:
        if days == self.days:
            return
        self.days = days
        self.refresh()

    def render(self) -> Text:
        size = self.content_size
        return day_chart(self.days, size.width, size.height)


class LoginMap(Widget):
    """The login places; redrawn at its own size, and only when the places changed."""

    DEFAULT_CSS = "LoginMap { height: 1fr; }"
    points: list[LocatedLogin] = []

    def show(self, points: list[LocatedLogin]) -> None:
        if points == self.points:
            return
        self.points = points
        self.refresh()

    def render(self) -> Text:
        size = self.content_size
        return location_map(self.points, size.width, size.height)


@dataclass(frozen=True)
class TimelineData:
    timeline: Timeline
    days: list[DayCount]
    located: list[LocatedLogin]


class TimelineScreen(ProtectsAccount, ConsoleScreen):
    TITLE_TEXT = "Timeline"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="timeline.back",
                tooltip="Back to the screen that opened this timeline"),
        Binding("r", "reload", "Refresh", id="timeline.refresh",
                tooltip="Load the account's timeline again"),
        Binding("a", "anomalies", "Findings", id="timeline.anomalies",
                tooltip="The account's anomalies, most severe first"),
        Binding("f", "twofa_reset", "2FA reset", id="timeline.twofa",
                tooltip="Request a reset of the account's 2FA (four-eyes)"),
        *PROTECTION_BINDINGS,
    ]
    DEFAULT_CSS = """
    TimelineScreen #tl-ident { display: none; }
    TimelineScreen.-ask #tl-ident { display: block; }
    TimelineScreen #tl-head { height: 1; padding: 0 1; }
    TimelineScreen #tl-head.-error { color: $error; text-style: bold; }
    TimelineScreen #tl-charts { height: 12; }
    TimelineScreen #tl-days-box { width: 2fr; border: round $primary; padding: 0 1; }
    TimelineScreen #tl-map-box { width: 3fr; border: round $primary; }
    TimelineScreen #tl-events { height: 1fr; }
    TimelineScreen #tl-detail { height: 4; padding: 0 1; background: $panel; }
    """

    def __init__(self, account_id: uuid.UUID | None = None, *,
                 days: int = timeline.DEFAULT_DAYS) -> None:
        super().__init__()
        self.account_id = account_id
        self.ident: Ident | None = account_id
        self.days = days
        self.data: TimelineData | None = None

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="account id or exact email, then enter", id="tl-ident",
                    max_length=320)
        yield StatusLine(Text("loading…"), id="tl-head")
        with Horizontal(id="tl-charts"):
            with Widget(id="tl-days-box") as days_box:
                days_box.border_title = f"Logins per day ({self.days} d, UTC)"
                yield DayChart(id="tl-days")
            with Widget(id="tl-map-box") as map_box:
                map_box.border_title = "Login places"
                yield LoginMap(id="tl-map")
        yield ConsoleTable(id="tl-events", cursor_type="row", zebra_stripes=True)
        yield Static(Text(""), id="tl-detail")

    def on_mount(self) -> None:
        if self.ident is None:
            self.add_class("-ask")
            self.set_status("look up an account: its id or exact email")
            self.query_one("#tl-ident", Input).focus()
        else:
            self.action_reload()

    @on(Input.Submitted, "#tl-ident")
    def _lookup(self, event: Input.Submitted) -> None:
        event.stop()
        ident = event.value.strip()
        if ident:
            self.ident = ident
            self.action_reload()

    def action_reload(self) -> None:
        """Load the account's timeline again."""
        if self.ident is not None:
            self.set_status("loading…")
            self.load(self.ident)

    @work(thread=True, exclusive=True, exit_on_error=False, group="timeline")
    def load(self, ident: Ident) -> None:
        def fetch() -> TimelineData:
            story = timeline.account_timeline(self.runtime, self.officer, ident)
            # The charts follow the account the story resolved to.
            days = timeline.logins_per_day(self.runtime, self.officer, story.account_id,
                                           days=self.days)
            located = timeline.located_logins(self.runtime, self.officer, story.account_id)
            return TimelineData(story, days, located)

        self.deliver(fetch)

    def on_console_screen_loaded(self, message: ConsoleScreen.Loaded) -> None:
        if message.data is None:
            self.set_status(message.error, error=True)
            return
        self.data = data = message.data
        story = data.timeline
        self.account_id = story.account_id
        flagged = sum(1 for e in story.events if e.anomalies)
        self.set_status(Text.assemble(
            ("Account ", "bold"), safe_text(story.account, limit=64), "  ",
            safe_text(story.email), "  status ", safe_text(story.status),
            "  country ", safe_text(story.country or "-"),
            f"  {len(story.events)} events, {flagged} flagged",
            " (older events not shown)" if story.truncated else ""))
        self.query_one(DayChart).show(data.days)
        self.query_one(LoginMap).show(data.located)
        table: DataTable[Text] = self.query_one("#tl-events", DataTable)
        rows = [
            (Text(f"{e.at:%m-%d %H:%M}"),
             Text(EVENT_LABELS.get(e.type, e.type),
                  style="bold red" if e.type == "login_failed" else ""),
             safe_text(e.summary),
             badges(e.anomalies))
            for e in story.events
        ]
        # The summary takes what the badges leave (they are repeated, in full, under the
        # table); each column is padded by one cell on both sides, plus the scrollbar.
        findings = min(FINDINGS_WIDTH, max([8, *(r[3].cell_len for r in rows)]))
        what = max(24, table.size.width - 3 - 4 * 2 - 11 - 12 - findings)
        fill_table(table, [("at", "When (UTC)", 11), ("type", "Event", 12),
                           ("what", "What", what), ("badges", "Findings", findings)], rows)
        if rows:
            move_cursor_to(table, len(rows) - 1)
            self._detail(len(rows) - 1)
        else:
            self.query_one("#tl-detail", Static).update(Text("no events"))
        self.remove_class("-ask")
        table.focus()

    @on(DataTable.RowHighlighted, "#tl-events")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def _detail(self, row: int) -> None:
        """The full line under the table for the event shown in ``row``."""
        if self.data is None:
            return
        e = self.query_one("#tl-events", ConsoleTable).item(self.data.timeline.events, row)
        if e is None:
            return
        d = e.details
        text = Text(no_wrap=False, overflow="fold")
        text.append(f"{e.at:%Y-%m-%d %H:%M:%S} ", style="bold")
        text.append_text(safe_text(e.summary))
        if e.type in ("login", "login_failed"):
            text.append("\nagent ", style="dim")
            text.append_text(safe_text(d.get("user_agent") or "-", limit=200))
            text.append("  device ", style="dim")
            text.append_text(safe_text(d.get("device_id") or "-", limit=40))
        for found in e.anomalies:
            text.append("\n")
            text.append_text(badge(str(found["kind"]), str(found["severity"])))
            text.append(" ")
            text.append_text(safe_text(found["explanation"]))
        self.query_one("#tl-detail", Static).update(text)

    def action_anomalies(self) -> None:
        """The account's anomalies."""
        if self.account_id is None:
            self.notify("Look up an account first.", markup=False)
            return
        self.open_account("anomalies", self.account_id)

    def action_twofa_reset(self) -> None:
        """Open the 2FA reset request for this account."""
        if self.account_id is None:
            self.notify("Look up an account first.", markup=False)
            return
        self.open_account("twofa", self.account_id)

    def protected_account(self) -> str | None:
        return self.data.timeline.account if self.data is not None else None

    def reload_protected(self) -> None:
        self.action_reload()
