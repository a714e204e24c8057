"""Client 2FA reset in the console.

:class:`TwoFactorResetScreen` (``TwoFactorResetScreen(account_id)``) is pushed from the
account timeline, the withdrawal detail screen and the approvals inbox (``screens.
approvals``, where requests of every kind are decided). It shows the account's 2FA
status and risk context (recent login anomalies, open withdrawals, recent security
changes, active holds), the identity-proofing checklist to open a reset request, and the
pending requests of other officers.

:class:`PendingRequests` decides requests. The step-up code goes into a password input
(drawn as bullets, so it never appears on screen or in a snapshot) and is cleared as soon
as it has been sent, whatever the outcome. The services check every control (role,
four-eyes, expiry, code); the screen only shows their one-line refusals. All platform text
goes through ``safe_text``.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Checkbox, DataTable, Input, Static
from textual.worker import Worker, WorkerState, get_current_worker

from polysec_tui.errors import PolysecError
from polysec_tui.screens.widgets import (
    ConsoleError,
    ConsoleScreen,
    ConsoleTable,
    describe_error,
    fill_table,
    safe_text,
)
from polysec_tui.services.clients import twofa
from polysec_tui.services.clients.twofa import ResetRequestView, RiskContext, TwoFactorStatus
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import fmt_minute

CODE_LENGTH = 8  # authenticator codes are 6 digits; a little room, never more
# Short names of the identity proofs for the request table.
PROOF_SHORT = {"id_document": "ID", "liveness": "liveness", "history_questions": "history",
               "kyc_reference": "KYC"}


class PendingRequests(Vertical):
    """Pending 2FA reset requests of other officers, with approve/deny and a code field."""

    DEFAULT_CSS = """
    PendingRequests { height: auto; border: round $primary-muted; padding: 0 1; }
    PendingRequests #pending-table { height: auto; max-height: 12; }
    PendingRequests #pending-controls { height: auto; }
    PendingRequests #pending-code { width: 22; }
    PendingRequests #pending-note { width: 1fr; }
    PendingRequests Button { min-width: 10; margin: 0 0 0 1; }
    PendingRequests #pending-status { height: 1; }
    PendingRequests #pending-status.-error { color: $error; text-style: bold; }
    """

    class Listed(Message, bubble=False):
        def __init__(self, requests: list[ResetRequestView]) -> None:
            super().__init__()
            self.requests = requests

    class Decided(Message, bubble=False):
        def __init__(self, text: str, error: bool) -> None:
            super().__init__()
            self.text = text
            self.error = error

    class Changed(Message):
        """A request was decided here: screens showing the account reload it."""

    def __init__(self, runtime: Runtime, actor: Actor) -> None:
        super().__init__(id="pending")
        self.runtime = runtime
        self.actor = actor
        self.requests: list[ResetRequestView] = []
        self._outcome_shown = False
        self.border_title = "Pending 2FA reset requests of other officers"

    def compose(self) -> ComposeResult:
        yield ConsoleTable(id="pending-table", cursor_type="row", zebra_stripes=True,
                           copy_column="id")
        with Horizontal(id="pending-controls"):
            yield Input(placeholder="your code", password=True,
                        max_length=CODE_LENGTH, restrict=r"[0-9]*", id="pending-code")
            yield Input(placeholder="reason (for a denial)", max_length=500,
                        id="pending-note")
            yield Button("Approve", id="pending-approve", variant="warning")
            yield Button("Deny", id="pending-deny")
        yield Static(Text("loading…"), id="pending-status")

    def on_mount(self) -> None:
        self.reload()

    @work(thread=True, exclusive=True, exit_on_error=False, group="2FA requests")
    def reload(self) -> None:
        requests = twofa.list_requests(self.runtime, self.actor, pending_only=True,
                                       exclude_requester=self.actor.officer_id)
        if not get_current_worker().is_cancelled:
            self.post_message(self.Listed(requests))

    def on_pending_requests_listed(self, message: PendingRequests.Listed) -> None:
        self.requests = message.requests
        table: DataTable[Text] = self.query_one("#pending-table", DataTable)
        fill_table(table, [
            ("id", "Request", 8), ("account", "Account", None), ("by", "Requested by", None),
            ("at", "Opened", 16), ("expires", "Expires", 16), ("proofs", "Proofs", None),
            ("risk", "Risk", None), ("reason", "Reason", None),
        ], [
            (Text(str(r.id)[:8]), safe_text(r.account, limit=40), safe_text(r.requester),
             Text(fmt_minute(r.created_at)), Text(fmt_minute(r.expires_at)),
             Text(",".join(PROOF_SHORT.get(p, p) for p in twofa.PROOFS if p in r.proofs)),
             Text(str(sum(r.risk.values()))), safe_text(r.reason, limit=40))
            for r in message.requests
        ])
        if not self._outcome_shown:  # keep the outcome of a decision until the next one
            self._status(f"{len(message.requests)} pending; select one, enter your code, "
                         "then Approve or Deny (senior or above)"
                         if message.requests else "no pending requests of other officers")

    def selected(self) -> ResetRequestView | None:
        request: ResetRequestView | None = self.query_one("#pending-table",
                                                          ConsoleTable).item(self.requests)
        return request

    @on(Button.Pressed, "#pending-approve")
    def _approve(self, event: Button.Pressed) -> None:
        event.stop()
        self._decide(approve=True)

    @on(Button.Pressed, "#pending-deny")
    def _deny(self, event: Button.Pressed) -> None:
        event.stop()
        self._decide(approve=False)

    def _decide(self, *, approve: bool) -> None:
        request = self.selected()
        code_input = self.query_one("#pending-code", Input)
        code = code_input.value
        code_input.value = ""  # the code is used once and never kept on screen
        if request is None:
            self._status("select a request first", error=True)
            return
        note = self.query_one("#pending-note", Input).value.strip()
        if not approve and not note:
            self._status("a reason is required to deny", error=True)
            return
        self._status("deciding…")
        self.decide(request.id, approve, code, note)

    @work(thread=True, exclusive=True, exit_on_error=False, group="2FA decision")
    def decide(self, request_id: uuid.UUID, approve: bool, code: str, note: str) -> None:
        try:
            if approve:
                done = twofa.approve(self.runtime, self.actor, request_id, code)
                text = (f"request {str(request_id)[:8]} approved: 2FA of "
                        f"{done.result.get('account')} reset, "
                        f"{done.result.get('sessions_revoked')} sessions revoked, "
                        f"withdrawals held until {done.result.get('hold_until', '')[:16]}")
            else:
                twofa.deny(self.runtime, self.actor, request_id, note, code)
                text = f"request {str(request_id)[:8]} denied"
            message = self.Decided(text, False)
        except PolysecError as error:
            message = self.Decided(str(error), True)
        self.post_message(message)

    def on_pending_requests_decided(self, message: PendingRequests.Decided) -> None:
        self._status(message.text, error=message.error, outcome=True)
        if not message.error:
            self.query_one("#pending-note", Input).value = ""
            self.post_message(self.Changed())
        self.reload()

    def _status(self, text: str, *, error: bool = False, outcome: bool = False) -> None:
        self._outcome_shown = outcome or error
        status = self.query_one("#pending-status", Static)
        status.update(safe_text(text))
        status.set_class(error, "-error")


class TwoFactorResetScreen(ConsoleScreen):
    """The 2FA reset flow for one account, opened over the timeline, a withdrawal or the
    requests list with the account id alone (`ConsoleScreen.open_account`)."""

    TITLE_TEXT = "2FA reset"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="twofa.back", tooltip="Back to where you were"),
        Binding("ctrl+r", "reload", "Refresh", id="twofa.reload",
                tooltip="Load status, risk context and requests again"),
    ]
    DEFAULT_CSS = """
    TwoFactorResetScreen #twofa-body { height: 1fr; }
    TwoFactorResetScreen #twofa-status { height: auto; border: round $primary-muted;
                                         padding: 0 1; }
    TwoFactorResetScreen #twofa-risk { height: auto; max-height: 12;
                                       border: round $primary-muted; }
    TwoFactorResetScreen #twofa-form { height: auto; border: round $warning; padding: 0 1; }
    TwoFactorResetScreen #twofa-form Horizontal { height: auto; }
    TwoFactorResetScreen #twofa-form Input { width: 1fr; }
    TwoFactorResetScreen #twofa-form Checkbox { width: auto; }
    TwoFactorResetScreen #twofa-message { height: 1; }
    TwoFactorResetScreen #twofa-message.-error { color: $error; text-style: bold; }
    """

    class Loaded(Message, bubble=False):
        def __init__(self, status: TwoFactorStatus | None, risk: RiskContext | None,
                     error: str = "") -> None:
            super().__init__()
            self.status = status
            self.risk = risk
            self.error = error

    class Opened(Message, bubble=False):
        def __init__(self, text: str, error: bool) -> None:
            super().__init__()
            self.text = text
            self.error = error

    def __init__(self, account_id: uuid.UUID) -> None:
        super().__init__()
        self.account_id = account_id
        self.status: TwoFactorStatus | None = None

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="twofa-body"):
            status = Static(Text("loading…"), id="twofa-status")
            status.border_title = "Authenticator"
            yield status
            risk: DataTable[Text] = DataTable(id="twofa-risk", cursor_type="row")
            risk.border_title = "Risk context"
            yield risk
            with Vertical(id="twofa-form") as form:
                form.border_title = "Open a reset request (identity proofing)"
                form.border_subtitle = "a second officer approves"
                with Horizontal():
                    yield Input(placeholder="ID document check reference", max_length=128,
                                id="proof-id-document")
                    yield Input(placeholder="selfie / liveness reference", max_length=128,
                                id="proof-liveness")
                with Horizontal():
                    yield Checkbox("history questions answered", id="proof-history")
                    yield Input(placeholder="KYC record reference", max_length=128,
                                id="proof-kyc")
                yield Input(placeholder="reason (why the client needs a reset)",
                            max_length=2000, id="twofa-reason")
                yield Input(placeholder="evidence (how identity was verified, case notes)",
                            max_length=2000, id="twofa-evidence")
                with Horizontal():
                    yield Button("Open request", id="twofa-open", variant="warning")
                yield Static(Text(""), id="twofa-message")
            assert self.actor is not None
            yield PendingRequests(self.runtime, self.actor)

    def on_mount(self) -> None:
        # The form is what this screen is for: typing goes into its first field.
        self.query_one("#proof-id-document", Input).focus()
        self.load()

    def action_reload(self) -> None:
        """Load everything again."""
        self.load()
        self.query_one(PendingRequests).reload()

    @on(PendingRequests.Changed)
    def _changed(self, event: PendingRequests.Changed) -> None:
        event.stop()
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="2FA status")
    def load(self) -> None:
        try:
            status = twofa.status_by_id(self.runtime, self.officer, self.account_id)
            risk = twofa.risk_context(self.runtime, self.officer, status.account)
            message = self.Loaded(status, risk)
        except PolysecError as error:
            message = self.Loaded(None, None, str(error))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_two_factor_reset_screen_loaded(self, message: TwoFactorResetScreen.Loaded) -> None:
        box = self.query_one("#twofa-status", Static)
        if message.status is None or message.risk is None:
            box.update(safe_text(message.error, style="bold"))
            return
        s = self.status = message.status
        lines = [
            Text.assemble(("Account   ", "bold"), safe_text(s.account, limit=64)),
            Text.assemble(("Enrolled  ", "bold"),
                          f"yes, since {fmt_minute(s.enrolled_at)} UTC; last used "
                          f"{fmt_minute(s.last_used_at)}" if s.enrolled else "no authenticator"),
            Text.assemble(("Re-enrol  ", "bold"),
                          "required at next login" if s.reenrolment_required else "no"),
            Text.assemble(("Hold      ", "bold"),
                          f"withdrawals held until {fmt_minute(s.hold_until)} UTC"
                          if s.hold_until else "none"),
            Text.assemble(("Request   ", "bold"),
                          f"pending {s.pending_request}" if s.pending_request else "none"),
        ]
        if s.events:
            recent = "; ".join(f"{e['kind']} {fmt_minute(e['at'])}" for e in s.events[:4])
            lines.append(Text.assemble(("Events    ", "bold"), safe_text(recent)))
        box.update(Text("\n").join(lines))
        r = message.risk
        table: DataTable[Text] = self.query_one("#twofa-risk", DataTable)
        table.border_subtitle = r.summary()
        rows: list[tuple[Text, Text, Text]] = []
        for a in r.anomalies:
            rows.append((Text(fmt_minute(a["at"])), Text(f"anomaly {a['kind']} ({a['severity']})"),
                         safe_text(a["explanation"], limit=80)))
        for w in r.pending_withdrawals:
            rows.append((Text(fmt_minute(w["requested_at"])), Text(f"withdrawal {w['status']}"),
                         safe_text(f"{w['amount']} {w['asset']} to {w['address']}",
                                   limit=80)))
        for c in r.security_changes:
            rows.append((Text(fmt_minute(c["at"])), Text(f"security {c['kind']}"),
                         safe_text(c["ip"] or "-")))
        for h in r.active_holds:
            rows.append((Text(fmt_minute(h["created_at"])), Text(f"hold {h['kind']}"),
                         safe_text(f"until {fmt_minute(h['expires_at'])}: {h['reason']}",
                                   limit=80)))
        fill_table(table, [("when", "When", 16), ("what", "What", None),
                           ("detail", "Detail", None)], rows)

    @on(Button.Pressed, "#twofa-open")
    def _open(self, event: Button.Pressed) -> None:
        event.stop()
        if self.status is None:
            self._message("status not loaded yet", error=True)
            return
        proof = twofa.Proof(
            id_document=self.query_one("#proof-id-document", Input).value or None,
            liveness=self.query_one("#proof-liveness", Input).value or None,
            history_questions="passed" if self.query_one("#proof-history", Checkbox).value
            else None,
            kyc_reference=self.query_one("#proof-kyc", Input).value or None,
        )
        reason = self.query_one("#twofa-reason", Input).value
        evidence = self.query_one("#twofa-evidence", Input).value
        self._message("opening…")
        self.open_request(self.status.account, reason, evidence, proof)

    @work(thread=True, exclusive=True, exit_on_error=False, group="2FA request")
    def open_request(self, account: str, reason: str, evidence: str,
                     proof: twofa.Proof) -> None:
        try:
            opened = twofa.request_reset(self.runtime, self.officer, account, reason, evidence,
                                         proof)
            message = self.Opened(
                f"request {opened.request.id} opened; it expires "
                f"{fmt_minute(opened.request.expires_at)} UTC; another officer (senior or "
                "above) must approve it", False)
        except PolysecError as error:
            message = self.Opened(str(error), True)
        self.post_message(message)

    def on_two_factor_reset_screen_opened(self, message: TwoFactorResetScreen.Opened) -> None:
        self._message(message.text, error=message.error)
        if not message.error:
            for selector in ("#proof-id-document", "#proof-liveness", "#proof-kyc",
                             "#twofa-reason", "#twofa-evidence"):
                self.query_one(selector, Input).value = ""
            self.query_one("#proof-history", Checkbox).value = False
            self.load()

    def _message(self, text: str, *, error: bool = False) -> None:
        widget = self.query_one("#twofa-message", Static)
        widget.update(safe_text(text))
        widget.set_class(error, "-error")

    @on(Worker.StateChanged)
    def _report_worker_error(self, event: Worker.StateChanged) -> None:
        error = event.worker.error
        if event.state is WorkerState.ERROR and error is not None:
            self.post_message(ConsoleError(f"{event.worker.group} failed",
                                           describe_error(error)))
