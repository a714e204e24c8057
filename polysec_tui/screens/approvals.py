"""The approvals inbox: every pending four-eyes request of every kind, decided here.

Large withdrawals, client 2FA resets, unfreezes, officer grants, and any kind a domain
adds to `services.four_eyes.KINDS`: one table, newest first, refreshed every few
seconds while shown (a request opened in another console appears by itself). The
selected request's evidence is under the table: who asked, when and why, and what the
kind says about its subject (the withdrawal's amount and risk, the identity proofs and
their references, the freeze it would lift). Enter opens the subject (the withdrawal's
detail, the account's 2FA screen or timeline), ``t`` the account's timeline.

Approving or denying takes a fresh authenticator code in a password input (drawn as
bullets, cleared as soon as it is sent; Enter there approves); a denial also needs a
reason. The officer's own
requests are listed (marked "yours") so they can follow them, and refused here before
any code is spent; ``m`` shows only theirs, decided ones included, with the outcome.
Every other control (role, independence, expiry, a race with another approver) is the
service's, shown as its one-line refusal.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Input, Static

from polysec_tui.errors import PolysecError
from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    StatusLine,
    fill_table,
    safe_text,
)
from polysec_tui.services import four_eyes
from polysec_tui.services.officers.approvals import RequestView
from polysec_tui.text import fmt_minute

CODE_LENGTH = 8  # authenticator codes are 6 digits; a little room, never more
REFRESH_SECONDS = 5.0


class ApprovalsScreen(ConsoleScreen):
    TITLE_TEXT = "Approvals"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="approvals.open", show=False,
                tooltip="The request's subject: withdrawal detail, 2FA screen or timeline"),
        Binding("o", "open", "Open subject", id="approvals.open-key",
                tooltip="The request's subject: withdrawal detail, 2FA screen or timeline"),
        Binding("t", "timeline", "Timeline", id="approvals.timeline",
                tooltip="The timeline of the request's account"),
        Binding("m", "mine", "Mine/all", id="approvals.mine",
                tooltip="Only your own requests, decided ones too, or every pending one"),
        Binding("r", "reload", "Refresh", id="approvals.refresh",
                tooltip="Load the requests again"),
    ]
    DEFAULT_CSS = """
    ApprovalsScreen #approvals-status { height: 1; padding: 0 1; }
    ApprovalsScreen #approvals-table { height: 1fr; }
    ApprovalsScreen #approvals-evidence-box { height: auto; max-height: 16;
                                              border: round $primary-muted; }
    ApprovalsScreen #approvals-evidence { height: auto; padding: 0 1; }
    ApprovalsScreen #approvals-controls { height: auto; }
    ApprovalsScreen #approvals-code { width: 22; }
    ApprovalsScreen #approvals-note { width: 1fr; }
    ApprovalsScreen Button { min-width: 10; margin: 0 0 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[RequestView] = []
        self.mine = False
        self._outcome: tuple[str, bool] | None = None  # the last decision's, kept in view
        # The request that was highlighted when a reload found it gone (decided in
        # another console, expired): the cursor is on another one now, whose evidence
        # the officer has not read, so the next decision is refused once, saying so.
        self._gone: RequestView | None = None
        self._filled: bool | None = None  # the view (mine or not) the table shows
        self._decided_here: uuid.UUID | None = None  # gone because decided here

    def compose_body(self) -> ComposeResult:
        yield StatusLine(Text("loading…"), id="approvals-status")
        yield ConsoleTable(id="approvals-table", cursor_type="row", zebra_stripes=True,
                           copy_column="id")
        # A long evidence (a rule set's backtest) scrolls, with the mouse wheel: not a
        # stop of tab, which goes from the table to the code field (digits typed into
        # a focused box would switch screens).
        with VerticalScroll(id="approvals-evidence-box", can_focus=False) as box:
            box.border_title = "Evidence"
            yield Static(Text(""), id="approvals-evidence")
        with Horizontal(id="approvals-controls"):
            yield Input(placeholder="your code", password=True, max_length=CODE_LENGTH,
                        restrict=r"[0-9]*", id="approvals-code")
            yield Input(placeholder="reason (for a denial)", max_length=500,
                        id="approvals-note")
            yield Button("Approve", id="approvals-approve", variant="warning")
            yield Button("Deny", id="approvals-deny")

    def on_mount(self) -> None:
        self.reload_while_shown(REFRESH_SECONDS, self.action_reload)
        self.query_one("#approvals-table", DataTable).focus()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        """Load the requests again."""
        self.load(self.mine)

    def action_mine(self) -> None:
        """Only your own requests (decided ones too), or every pending one."""
        self.mine = not self.mine
        self._outcome = self._gone = None
        self.action_reload()

    @work(thread=True, exclusive=True, exit_on_error=False, group="approvals")
    def load(self, mine: bool) -> None:
        self.deliver(lambda: (mine, four_eyes.list_requests(
            self.runtime, self.officer, pending_only=not mine, mine=mine)))

    def on_console_screen_loaded(self, message: ConsoleScreen.Loaded) -> None:
        if message.data is None:
            self.set_status(message.error, error=True)
            return
        mine, requests = message.data
        if mine != self.mine:
            return  # an answer to the view before the last toggle
        table = self.query_one("#approvals-table", ConsoleTable)
        selected = self._selected() if self._filled == mine else None
        self._filled = mine
        self.requests = requests
        me = self.officer.officer_id
        fill_table(table, [
            ("id", "Request", 8), ("kind", "Kind", None), ("what", "What", None),
            ("by", "Asked by", None), ("at", "Opened", 16),
            ("state", "State" if mine else "Expires", 16), ("reason", "Reason", None),
        ], [
            (Text(str(r.id)[:8]), Text(r.kind), safe_text(r.description, limit=40),
             Text("yours", style="bold") if r.requester_id == me else safe_text(r.requester),
             Text(fmt_minute(r.created_at)),
             Text(_state(r)) if mine else Text(fmt_minute(r.expires_at)),
             safe_text(r.reason, limit=36))
            for r in requests
        ])
        if selected is not None:  # the same request stays highlighted, however sorted
            for index, request in enumerate(requests):
                row = table.view_row(index) if request.id == selected.id else None
                if row is not None:
                    table.move_cursor(row=row)
            if (requests and selected.id != self._decided_here
                    and all(r.id != selected.id for r in requests)):
                self._gone = selected
        self._show_evidence()
        if self._gone is not None:
            self.set_status(self._gone_text(), error=True)
        elif self._outcome is not None:
            text, error = self._outcome
            self.set_status(text, error=error)
        elif mine:
            self.set_status(f"{len(requests)} request(s) of yours; m: every pending one")
        elif requests:
            others = sum(r.requester_id != me for r in requests)
            self.set_status(f"{len(requests)} pending ({others} of other officers): select "
                            "one, enter your code, then Approve or Deny · m: only yours")
        else:
            self.set_status("no pending requests")

    def _gone_text(self) -> str:
        assert self._gone is not None
        return (f"request {str(self._gone.id)[:8]} ({self._gone.description}) is no longer "
                "pending: decided in another console, or expired. The highlighted request "
                "is another one: read its evidence, then enter your code")

    def _selected(self) -> RequestView | None:
        request: RequestView | None = self.query_one("#approvals-table", ConsoleTable).item(
            self.requests)
        return request

    @on(DataTable.RowHighlighted, "#approvals-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_evidence()

    def _show_evidence(self) -> None:
        request = self._selected()
        evidence = self.query_one("#approvals-evidence", Static)
        if request is None:
            evidence.update(Text(""))
            return
        lines = [("request", f"{request.id} ({request.kind})"),
                 ("asked by", f"{request.requester} at {fmt_minute(request.created_at)} UTC"),
                 ("reason", request.reason), *request.evidence,
                 ("decision", _state(request))]
        if request.decision_note:
            lines.append(("decision note", request.decision_note))
        width = max(len(label) for label, _text in lines)
        evidence.update(Text("\n").join(
            # The evidence is the system's own text (a rule set's changes can be long);
            # the requester's reason is bounded where it is recorded.
            Text.assemble((f"{label:<{width}}  ", "bold"), safe_text(text, limit=2000))
            for label, text in lines))

    @on(DataTable.RowSelected, "#approvals-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        """The request's subject: withdrawal detail, 2FA screen or timeline."""
        request = self._selected()
        if request is None:
            self.app.bell()
            return
        subject = request.subject
        if subject.withdrawal is not None:
            self.open_withdrawal(subject.withdrawal)
        elif subject.account_id is not None:
            self.open_account("twofa" if request.kind.startswith("twofa")
                              else "timeline", subject.account_id)
        else:
            self.set_status(f"request {str(request.id)[:8]} is about officer "
                            f"{subject.officer or '?'}: its evidence is below")

    def action_timeline(self) -> None:
        """The timeline of the request's account."""
        request = self._selected()
        if request is None or request.subject.account_id is None:
            self.app.bell()
            return
        self.open_account("timeline", request.subject.account_id)

    # ------------------------------------------------------------------ deciding

    @on(Button.Pressed, "#approvals-approve")
    @on(Input.Submitted, "#approvals-code")
    def _approve(self, event: Button.Pressed | Input.Submitted) -> None:
        event.stop()
        self._decide(approve=True)

    @on(Button.Pressed, "#approvals-deny")
    def _deny(self, event: Button.Pressed) -> None:
        event.stop()
        self._decide(approve=False)

    def _decide(self, *, approve: bool) -> None:
        request = self._selected()
        code_input = self.query_one("#approvals-code", Input)
        code = code_input.value
        code_input.value = ""  # the code is used once and never kept on screen
        if request is None:
            self._show_outcome("select a request first", error=True)
            return
        if self._gone is not None:
            text, self._gone = self._gone_text(), None
            self._show_outcome(text, error=True)
            return
        if request.requester_id == self.officer.officer_id:
            self._show_outcome("this is your own request: another officer decides it "
                               "(four-eyes)", error=True)
            return
        if request.status != "pending":
            self._show_outcome(f"request {str(request.id)[:8]} is {request.status}",
                               error=True)
            return
        note = self.query_one("#approvals-note", Input).value.strip()
        if not approve and not note:
            self._show_outcome("a reason is required to deny", error=True)
            return
        if not code:
            self._show_outcome("enter a fresh authenticator code first", error=True)
            return
        self.set_status("deciding…")
        # Set now, not when the outcome arrives: a reload in between must not take the
        # request's going for another console's decision.
        self._decided_here = request.id
        self.decide(request.id, approve, code, note)

    @work(thread=True, exclusive=True, exit_on_error=False, group="approval decision")
    def decide(self, request_id: uuid.UUID, approve: bool, code: str, note: str) -> None:
        short = str(request_id)[:8]
        try:
            if approve:
                done = four_eyes.approve(self.runtime, self.officer, request_id, code)
                result = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in done.result.items()
                                   if isinstance(v, str | int | float) and v != "")
                outcome = (f"request {short} approved and executed"
                           + (f": {result}" if result else ""), False)
            else:
                four_eyes.deny(self.runtime, self.officer, request_id, note, code)
                outcome = (f"request {short} denied", False)
        except PolysecError as error:
            outcome = (str(error), True)
        self.app.call_from_thread(self._decided, request_id, *outcome)

    def _decided(self, request_id: uuid.UUID, text: str, error: bool) -> None:
        if error and self._decided_here == request_id:
            self._decided_here = None  # it may still go by another console's decision
        if not error:
            self.query_one("#approvals-note", Input).value = ""
        self._show_outcome(text, error=error)
        self.action_reload()

    def _show_outcome(self, text: str, *, error: bool) -> None:
        self._outcome = (text, error)
        self.set_status(text, error=error)


def _state(request: RequestView) -> str:
    if request.status == "pending":
        return f"pending until {fmt_minute(request.expires_at)} UTC"
    by = f" by {request.decided_by}" if request.decided_by else ""
    when = f" at {fmt_minute(request.decided_at)}" if request.decided_at else ""
    return f"{request.status}{by}{when}"
