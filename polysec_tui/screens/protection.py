"""Account protection from the console: the lockdown and freeze confirmations.

:class:`LockdownScreen` first asks `services.protection.lockdown_plan` what a lockdown
would do now and lists exactly that; the officer states a reason and a fresh
authenticator code (a password-style input: never shown, never in a screenshot) and
confirms. :class:`FreezeScreen` asks for a reason, as :class:`UnfreezeScreen` does for
the four-eyes request that lifts a freeze. All dismiss with a one-line result
(or None when cancelled). Any screen that knows an account offers them with
:data:`PROTECTION_BINDINGS` and :class:`ProtectsAccount`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static
from textual.worker import get_current_worker

from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.screens.widgets import safe_text
from polysec_tui.services.clients import protection
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import printable

REFUSALS = (InputError, RefusedError, ConflictError)


class ActionModal(ModalScreen[str | None]):
    """A box with a text, inputs, a confirm button and an error line."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="protect.cancel", tooltip="Do nothing"),
    ]
    DEFAULT_CSS = """
    ActionModal { align: center middle; }
    ActionModal #protect-box { width: 76; max-width: 100%; height: auto; padding: 0 1;
                                border: thick $error; background: $surface; }
    ActionModal #protect-plan { margin: 0 0 1 0; }
    ActionModal #protect-error { color: $error; text-style: bold; }
    ActionModal #protect-buttons { height: auto; margin: 1 0 0 0; }
    ActionModal Button { margin: 0 1 0 0; }
    ActionModal .-empty { display: none; }
    """

    class Done(Message, bubble=False):
        def __init__(self, result: str | None, error: str = "") -> None:
            super().__init__()
            self.result = result
            self.error = error

    def __init__(self, runtime: Runtime, actor: Actor, account: str) -> None:
        super().__init__()
        self.runtime = runtime
        self.actor = actor
        self.account = account

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _error(self, text: str) -> None:
        widget = self.query_one("#protect-error", Static)
        widget.update(safe_text(text))
        widget.set_class(not text, "-empty")

    def on_action_modal_done(self, message: ActionModal.Done) -> None:
        if message.result is None:
            self._error(message.error)
            self.query_one("#protect-confirm", Button).disabled = False
            return
        self.dismiss(message.result)


class LockdownScreen(ActionModal):
    """Lists what the lockdown will do, then does it with a reason and a fresh code."""

    class Planned(Message, bubble=False):
        def __init__(self, plan: dict[str, Any] | None, error: str = "") -> None:
            super().__init__()
            self.plan = plan
            self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="protect-box") as box:
            box.border_title = "Lock down account"
            box.border_subtitle = "esc cancels"
            yield Static(Text.assemble("Account ", safe_text(self.account, limit=64),
                                       ": confirmed takeover. The lockdown will:"))
            yield Static(Text("…"), id="protect-plan")
            yield Input(placeholder="reason (kept in the incident and the audit log)",
                        id="protect-reason", max_length=500)
            yield Input(placeholder="your authenticator code", password=True,
                        id="protect-code", max_length=6, restrict=r"[0-9]*")
            yield Static(Text(""), id="protect-error", classes="-empty")
            with Horizontal(id="protect-buttons"):
                yield Button("Lock down", id="protect-confirm", variant="error",
                             disabled=True)
                yield Button("Cancel", id="protect-cancel")

    def on_mount(self) -> None:
        self.query_one("#protect-reason", Input).focus()
        self.load_plan()

    @work(thread=True, exclusive=True, exit_on_error=False, group="lockdown plan")
    def load_plan(self) -> None:
        try:
            message = self.Planned(protection.lockdown_plan(self.runtime, self.actor,
                                                            self.account))
        except REFUSALS as error:
            message = self.Planned(None, str(error))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_lockdown_screen_planned(self, message: LockdownScreen.Planned) -> None:
        plan = message.plan
        if plan is None:
            self._error(message.error)
            return
        withdrawals = plan["withdrawals_to_reject"]
        lines = [
            f"• revoke {plan['sessions_to_revoke']} client sessions and "
            f"{plan['api_keys_to_revoke']} API keys",
            "• require a new password at the next login",
            "• freeze withdrawals (and API withdrawals)" if plan["freeze"]
            else "• keep the freeze already in place",
            f"• reject {len(withdrawals)} open withdrawals"
            + (f": {', '.join(withdrawals[:6])}{' …' if len(withdrawals) > 6 else ''}"
               if withdrawals else ""),
            "• queue a notification to the client",
            "• open an incident (or add to the open lockdown incident)",
        ]
        self.query_one("#protect-plan", Static).update(
            Text("\n").join(safe_text(line) for line in lines))
        self.query_one("#protect-plan", Static).styles.height = len(lines)
        self.query_one("#protect-confirm", Button).disabled = False

    @on(Button.Pressed, "#protect-cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    @on(Button.Pressed, "#protect-confirm")
    @on(Input.Submitted, "#protect-code")
    def _confirm(self, event: Button.Pressed | Input.Submitted) -> None:
        event.stop()
        reason = self.query_one("#protect-reason", Input).value.strip()
        code_input = self.query_one("#protect-code", Input)
        code = code_input.value
        code_input.value = ""  # the code is single-use; never keep it around
        if not reason:
            self._error("a reason is required")
            return
        if len(code) != 6:
            self._error("a fresh 6-digit code is required")
            return
        self._error("")
        self.query_one("#protect-confirm", Button).disabled = True
        self.run_lockdown(reason, code)

    @work(thread=True, exclusive=True, exit_on_error=False, group="lockdown")
    def run_lockdown(self, reason: str, code: str) -> None:
        try:
            result = protection.lockdown(self.runtime, self.actor, self.account, reason, code)
            text = (f"account {result.account} was already locked down (incident "
                    f"{result.incident})" if result.already_locked else
                    f"account {result.account} locked down: {result.sessions_revoked} "
                    f"sessions, {result.api_keys_revoked} API keys revoked, "
                    f"{len(result.withdrawals_rejected)} withdrawals rejected; incident "
                    f"{result.incident}")
            message = self.Done(text)
        except REFUSALS as error:
            message = self.Done(None, str(error))
        if not get_current_worker().is_cancelled:
            self.post_message(message)


class FreezeScreen(ActionModal):
    """Freeze withdrawals with a reason (lifting it later takes two officers)."""

    BOX_TITLE = "Freeze withdrawals"
    EXPLAINED = ("every withdrawal and API withdrawal is blocked until a senior officer's "
                 "four-eyes unfreeze.")
    BUTTON = "Freeze"

    def compose(self) -> ComposeResult:
        with Vertical(id="protect-box") as box:
            box.border_title = self.BOX_TITLE
            box.border_subtitle = "esc cancels"
            yield Static(Text.assemble("Account ", safe_text(self.account, limit=64),
                                       f": {self.EXPLAINED}"), id="protect-plan")
            yield Input(placeholder="reason", id="protect-reason", max_length=500)
            yield Static(Text(""), id="protect-error", classes="-empty")
            with Horizontal(id="protect-buttons"):
                yield Button(self.BUTTON, id="protect-confirm", variant="error")
                yield Button("Cancel", id="protect-cancel")

    def on_mount(self) -> None:
        self.query_one("#protect-reason", Input).focus()

    @on(Button.Pressed, "#protect-cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    @on(Button.Pressed, "#protect-confirm")
    @on(Input.Submitted, "#protect-reason")
    def _confirm(self, event: Button.Pressed | Input.Submitted) -> None:
        event.stop()
        reason = self.query_one("#protect-reason", Input).value.strip()
        if not reason:
            self._error("a reason is required")
            return
        self.query_one("#protect-confirm", Button).disabled = True
        self.carry_out(reason)

    def perform(self, reason: str) -> str:
        placed = protection.freeze(self.runtime, self.actor, self.account, reason)
        return (f"account {self.account} frozen" if placed
                else f"account {self.account} was already frozen")

    @work(thread=True, exclusive=True, exit_on_error=False, group="freeze")
    def carry_out(self, reason: str) -> None:
        try:
            message = self.Done(self.perform(reason))
        except REFUSALS as error:
            message = self.Done(None, str(error))
        if not get_current_worker().is_cancelled:
            self.post_message(message)


class UnfreezeScreen(FreezeScreen):
    """Ask for a freeze to be lifted: a four-eyes request a senior officer decides in
    the approvals inbox."""

    BOX_TITLE = "Request an unfreeze"
    EXPLAINED = ("withdrawals open again once a senior officer other than you approves "
                 "this request (Approvals).")
    BUTTON = "Request unfreeze"

    def perform(self, reason: str) -> str:
        request = protection.request_unfreeze(self.runtime, self.actor, self.account, reason)
        return (f"unfreeze of account {self.account} requested ({str(request)[:8]}): a "
                "senior officer decides it under Approvals")


PROTECTION_BINDINGS: list[BindingType] = [
    Binding("L", "lockdown", "Lock down", id="protect.lockdown",
            tooltip="Confirmed takeover: lock the whole account down (fresh code)"),
    Binding("F", "freeze", "Freeze", id="protect.freeze",
            tooltip="Block the account's withdrawals until a four-eyes unfreeze"),
    Binding("U", "unfreeze", "Unfreeze", id="protect.unfreeze",
            tooltip="Ask a senior officer to lift the account's freeze (four-eyes)"),
]
MODALS: dict[str, type[ActionModal]] = {"lockdown": LockdownScreen, "freeze": FreezeScreen,
                                        "unfreeze": UnfreezeScreen}


def protect(screen: Any, kind: str, account: str | None,
            after: Callable[[], object] | None = None) -> None:
    """Push the lockdown, freeze or unfreeze-request confirmation for ``account`` from ``screen`` (a
    ConsoleScreen); the result is shown as a notification, then ``after`` runs (a
    reload of the screen's data)."""
    if account is None:
        screen.notify("nothing loaded yet", severity="warning", markup=False)
        return
    modal = MODALS[kind]

    def done(result: str | None) -> None:
        if result:
            # The result names the account: platform text, never markup.
            screen.notify(printable(result), title=kind, markup=False)
            if after is not None:
                after()

    screen.app.push_screen(modal(screen.runtime, screen.actor, account), done)


class ProtectsAccount:
    """The account-protection keys (:data:`PROTECTION_BINDINGS`) of a console screen that
    shows an account: it says which (``protected_account``) and what to reload after
    (``reload_protected``); the same protective actions wherever an account is shown."""

    def protected_account(self) -> str | None:
        raise NotImplementedError

    def reload_protected(self) -> None:
        raise NotImplementedError

    def action_lockdown(self) -> None:
        """Confirmed takeover: lock the account down (lists what happens first)."""
        protect(self, "lockdown", self.protected_account(), after=self.reload_protected)

    def action_freeze(self) -> None:
        """Freeze the account's withdrawals."""
        protect(self, "freeze", self.protected_account(), after=self.reload_protected)

    def action_unfreeze(self) -> None:
        """Ask a senior officer to lift the account's freeze."""
        protect(self, "unfreeze", self.protected_account(), after=self.reload_protected)
