"""Account lookup: by the platform's account id or an exact email (blind index).

The summary (`services.accounts.summary`) shows PII masked, balances and whether 2FA is
enrolled. ``v`` opens :class:`RevealScreen`: the officer picks one field and states a
reason; `services.accounts.reveal` checks ``pii.reveal`` (senior, admin) and audits it.
The value is shown in that modal only, and is gone when the modal closes: it is never put
in a notification, a log line or the screen below.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Select, Static
from textual.worker import get_current_worker

from polysec_tui.errors import InputError, RefusedError
from polysec_tui.screens.protection import PROTECTION_BINDINGS, ProtectsAccount
from polysec_tui.screens.widgets import ConsoleScreen, fill_table, safe_text
from polysec_tui.services.clients import accounts
from polysec_tui.services.clients.accounts import PII_FIELDS, AccountSummary
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime

LABELS = {"email": "Email", "full_name": "Name", "phone": "Phone",
          "date_of_birth": "Date of birth", "address": "Address"}


class AccountScreen(ProtectsAccount, ConsoleScreen):
    TITLE_TEXT = "Account"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("v", "reveal", "Reveal field", id="account.reveal",
                tooltip="Show one PII field in full (senior; needs a reason; audited)"),
        Binding("t", "timeline", "Timeline", id="account.timeline",
                tooltip="The account's story: events, anomalies, logins per day, places"),
        *PROTECTION_BINDINGS,
    ]
    DEFAULT_CSS = """
    AccountScreen #account-status { height: 1; padding: 0 1; }
    AccountScreen #account-status.-error { color: $error; text-style: bold; }
    AccountScreen #account-details { height: 1fr; }
    """

    class Looked(Message, bubble=False):
        def __init__(self, summary: AccountSummary | None, error: str = "") -> None:
            super().__init__()
            self.summary = summary
            self.error = error

    summary: AccountSummary | None = None

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="account id or exact email, then enter", id="account-ident",
                    max_length=320)
        yield Static(Text("look up an account"), id="account-status")
        yield DataTable(id="account-details", cursor_type="row", show_header=False)

    def on_mount(self) -> None:
        self.query_one("#account-ident", Input).focus()

    @on(Input.Submitted, "#account-ident")
    def _lookup(self, event: Input.Submitted) -> None:
        event.stop()
        ident = event.value.strip()
        if ident:
            self._status("looking up…")
            self.lookup(ident)

    @work(thread=True, exclusive=True, exit_on_error=False, group="account lookup")
    def lookup(self, ident: str) -> None:
        assert self.actor is not None
        try:
            message = self.Looked(accounts.summary(self.runtime, self.actor, ident))
        except (InputError, RefusedError) as error:
            message = self.Looked(None, str(error))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_account_screen_looked(self, message: AccountScreen.Looked) -> None:
        table: DataTable[Text] = self.query_one("#account-details", DataTable)
        table.clear()
        self.summary = message.summary
        if message.summary is None:
            self._status(message.error, error=True)
            return
        s = message.summary
        rows: list[tuple[str, Text]] = [
            ("Account", safe_text(s.external_id, limit=64)),
            ("Status", safe_text(s.status)),
            ("Country", safe_text(s.country or "-")),
            ("Created", Text(f"{s.created_at:%Y-%m-%d %H:%M} UTC")),
            *((LABELS.get(f, f), safe_text(s.masked.get(f) or "-")) for f in PII_FIELDS),
            ("2FA", Text("enrolled" if s.has_2fa else "NOT enrolled")),
        ]
        rows += [(f"Balance {asset}", safe_text(format(amount, "f")))
                 for asset, amount in sorted(s.balances.items())]
        rows += [("Hold", safe_text(hold, style="bold red", limit=200)) for hold in s.holds]
        if not s.holds:
            rows.append(("Holds", Text("none")))
        fill_table(table, [("field", "Field", None), ("value", "Value", None)],
                   [(Text(label, style="bold"), value) for label, value in rows])
        self._status("PII masked; v reveals one field (senior, reason required, audited); "
                     "t timeline · L lock down · F freeze · U unfreeze")
        table.focus()

    def action_reveal(self) -> None:
        """Ask for a field and a reason, then show that field in full (in a modal)."""
        if self.summary is None:
            self._status("look up an account first", error=True)
            return
        assert self.actor is not None
        self.app.push_screen(RevealScreen(self.runtime, self.actor, self.summary.external_id))

    def action_timeline(self) -> None:
        """Open the looked-up account's timeline."""
        if self.summary is None:
            self._status("look up an account first", error=True)
            return
        self.open_account("timeline", self.summary.id)

    def protected_account(self) -> str | None:
        return self.summary.external_id if self.summary else None

    def reload_protected(self) -> None:
        if self.summary is not None:
            self.lookup(self.summary.external_id)

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#account-status", Static)
        status.update(safe_text(text))
        status.set_class(error, "-error")


class RevealScreen(ModalScreen[None]):
    """One PII field in full, for as long as this modal is open."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="reveal.close", tooltip="Close and forget"),
    ]
    DEFAULT_CSS = """
    RevealScreen { align: center middle; }
    RevealScreen #reveal-box { width: 64; max-width: 100%; height: auto; padding: 0 1;
                               border: thick $warning; background: $surface; }
    RevealScreen #reveal-error { color: $error; text-style: bold; }
    RevealScreen #reveal-value { text-style: bold; }
    RevealScreen .-empty { display: none; }
    """

    class Revealed(Message, bubble=False):
        def __init__(self, value: str | None, error: str = "") -> None:
            super().__init__()
            self.value = value
            self.error = error

        def __repr__(self) -> str:  # the value never reaches a log
            return "Revealed(<hidden>)"

    def __init__(self, runtime: Runtime, actor: Actor, ident: str) -> None:
        super().__init__()
        self.runtime = runtime
        self.actor = actor
        self.ident = ident

    def compose(self) -> ComposeResult:
        with Vertical(id="reveal-box") as box:
            box.border_title = "Reveal one field"
            box.border_subtitle = "esc closes"
            yield Static(Text.assemble("Account ", safe_text(self.ident, limit=64),
                                       ": the reveal is audited with your reason."))
            yield Select([(LABELS.get(f, f), f) for f in PII_FIELDS], value=PII_FIELDS[0],
                         allow_blank=False, id="reveal-field")
            yield Input(placeholder="reason (at least 5 characters), then enter",
                        id="reveal-reason", max_length=200)
            yield Static(Text(""), id="reveal-error", classes="-empty")
            yield Static(Text(""), id="reveal-value", classes="-empty")

    def on_mount(self) -> None:
        self.query_one("#reveal-reason", Input).focus()

    @on(Input.Submitted, "#reveal-reason")
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        reason = event.value.strip()
        if len(reason) < 5:
            self._show("#reveal-error", "a reason of at least 5 characters is required")
            return
        field = self.query_one("#reveal-field", Select).value
        self._show("#reveal-error", "")
        self._show("#reveal-value", "")
        self.reveal(str(field), reason)

    @work(thread=True, exclusive=True, exit_on_error=False, group="reveal")
    def reveal(self, field: str, reason: str) -> None:
        try:
            message = self.Revealed(accounts.reveal(self.runtime, self.actor, self.ident,
                                                    field, reason))
        except (InputError, RefusedError) as error:
            message = self.Revealed(None, str(error))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_reveal_screen_revealed(self, message: RevealScreen.Revealed) -> None:
        if message.value is None:
            self._show("#reveal-error", message.error)
            return
        field = self.query_one("#reveal-field", Select).value
        label = LABELS.get(str(field), str(field))
        widget = self.query_one("#reveal-value", Static)
        widget.update(Text.assemble(f"{label}: ", safe_text(message.value or "(empty)")))
        widget.remove_class("-empty")

    def action_close(self) -> None:
        """Close the modal; the value goes with it."""
        self.dismiss(None)

    def _show(self, selector: str, text: str) -> None:
        widget = self.query_one(selector, Static)
        widget.update(safe_text(text))
        widget.set_class(not text, "-empty")
