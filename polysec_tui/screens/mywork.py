"""My work: the officer's claims with their SLA clock, the requests waiting for their
decision, their own requests and the team's work past its SLA (`services.work`).

Opened from the dashboard (``w``). Enter on a claim opens the withdrawal; enter on a
request to decide goes to the approvals inbox, where it is decided with a code.
Refreshed every few seconds while shown. Late rows say LATE in words, so NO_COLOR
terminals lose nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    StatusLine,
    fill_table,
    safe_text,
)
from polysec_tui.services import work as service
from polysec_tui.services.work import MyWork
from polysec_tui.text import fmt_amount, fmt_minute

REFRESH_SECONDS = 10.0


class MyWorkScreen(ConsoleScreen):
    TITLE_TEXT = "My work"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="mywork.back", tooltip="Back to the dashboard"),
        Binding("r", "reload", "Refresh", id="mywork.refresh", tooltip="Load it again"),
    ]
    DEFAULT_CSS = """
    MyWorkScreen #mywork-status { height: 1; padding: 0 1; }
    MyWorkScreen .section { text-style: bold; padding: 1 1 0 1; }
    MyWorkScreen DataTable { height: auto; max-height: 14; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.mine: MyWork | None = None

    def compose_body(self) -> ComposeResult:
        yield StatusLine(Text("loading…"), id="mywork-status")
        with VerticalScroll():
            yield Static(Text("Claimed by me"), classes="section", id="mywork-claimed-title")
            yield ConsoleTable(id="mywork-claimed", cursor_type="row", copy_column="id")
            yield Static(Text("Waiting for my decision"), classes="section",
                         id="mywork-decide-title")
            yield ConsoleTable(id="mywork-decide", cursor_type="row", copy_column="id")
            yield Static(Text("My requests (7 days)"), classes="section")
            yield DataTable(id="mywork-requested", cursor_type="row", show_cursor=False)

    def on_mount(self) -> None:
        self.reload_while_shown(REFRESH_SECONDS, self.action_reload)
        self.query_one("#mywork-claimed", DataTable).focus()
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        """Load it again."""
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="my work")
    def load(self) -> None:
        self.deliver(lambda: service.my_work(self.runtime, self.officer))

    def on_console_screen_loaded(self, message: ConsoleScreen.Loaded) -> None:
        if message.data is None:
            self.set_status(message.error, error=True)
            return
        self.mine = m = message.data
        late_claims = sum(m.due(i) < m.as_of for i in m.claimed)
        self.set_status(Text.assemble(
            f"{len(m.claimed)} claimed", *(((f" ({late_claims} LATE)", "bold red"),)
                                           if late_claims else ()),
            f" · {len(m.to_decide)} to decide · team past SLA: "
            f"{m.withdrawals_late} withdrawal(s), {m.alerts_late} alert(s) · "
            "enter opens"))
        fill_table(self.query_one("#mywork-claimed", DataTable), [
            ("due", "SLA due (UTC)", None), ("id", "Withdrawal", None),
            ("amount", "Amount", None), ("asset", "Asset", 6), ("status", "Status", None),
            ("rules", "Rules", None),
        ], [_claim_row(m, i) for i in m.claimed])
        fill_table(self.query_one("#mywork-decide", DataTable), [
            ("id", "Request", 8), ("kind", "Kind", None), ("what", "What", None),
            ("by", "Asked by", None), ("expires", "Expires", 16),
        ], [(Text(str(r.id)[:8]), Text(r.kind), safe_text(r.description, limit=50),
             safe_text(r.requester), Text(fmt_minute(r.expires_at))) for r in m.to_decide])
        fill_table(self.query_one("#mywork-requested", DataTable), [
            ("id", "Request", 8), ("what", "What", None), ("at", "Opened", 16),
            ("state", "State", None),
        ], [(Text(str(r.id)[:8]), safe_text(r.description, limit=50),
             Text(fmt_minute(r.created_at)),
             safe_text(r.status + (f" by {r.decided_by}" if r.decided_by else "")))
            for r in m.requested])

    @on(DataTable.RowSelected, "#mywork-claimed")
    def _open_claim(self, event: DataTable.RowSelected) -> None:
        event.stop()
        claim = None if self.mine is None else self.query_one(
            "#mywork-claimed", ConsoleTable).item(self.mine.claimed, event.cursor_row)
        if claim is not None:
            self.open_withdrawal(claim.external_id)

    @on(DataTable.RowSelected, "#mywork-decide")
    async def _open_inbox(self, event: DataTable.RowSelected) -> None:
        event.stop()
        await self.app.run_action("show('approvals')")


def _claim_row(m: MyWork, item: Any) -> tuple[Text, ...]:
    due = m.due(item)
    late = due < m.as_of
    return (Text(f"{fmt_minute(due)}{' LATE' if late else ''}",
                 style="bold red" if late else ""),
            safe_text(item.external_id, limit=40), Text(fmt_amount(item.amount), justify="right"),
            safe_text(item.asset), Text(item.status), safe_text(", ".join(item.rules)))
