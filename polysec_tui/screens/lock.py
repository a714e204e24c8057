"""The lock screen: shown after the idle time, over whatever the officer was looking at.

It is an opaque, full-screen modal: nothing of the screen below (client data) shows
through, and while it is up the app refuses navigation and the command palette. The same
officer's password and a fresh code resume the session (`sessions.unlock`, in a thread
worker). A wrong factor reads "authentication failed" only. When the session cannot be
resumed (ended, expired, officer disabled) the screen is dismissed with False and the app
goes back to the login screen.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from polysec_tui.errors import RefusedError
from polysec_tui.screens.widgets import TopBar, describe_error, safe_text
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime


class LockScreen(ModalScreen[bool]):
    # No escape binding: the only ways out are unlocking and quitting.
    BINDINGS: ClassVar[list[BindingType]] = []
    DEFAULT_CSS = """
    LockScreen { align: center middle; background: $background; }
    LockScreen #lock-box { width: 60; max-width: 100%; height: auto; padding: 0 1;
                           border: round $warning; background: $surface; }
    LockScreen #lock-error { color: $error; text-style: bold; }
    LockScreen .-empty { display: none; }
    """

    class Result(Message, bubble=False):
        def __init__(self, ok: bool, text: str, ended: bool = False) -> None:
            super().__init__()
            self.ok = ok
            self.text = text
            self.ended = ended

    busy = False

    def __init__(self, runtime: Runtime, actor: Actor, minutes: int) -> None:
        super().__init__()
        self.runtime = runtime
        self.actor = actor
        self.minutes = minutes

    def compose(self) -> ComposeResult:
        yield TopBar(self.runtime.database_label, "Locked")
        with Vertical(id="lock-box") as box:
            box.border_title = "Session locked"
            yield Static(Text.assemble(
                "Locked after ", str(self.minutes), " minutes idle. Officer ",
                safe_text(self.actor.name, style="bold"),
                ": password and a new code to resume."), id="lock-officer")
            yield Input(placeholder="password", password=True, id="lock-password",
                        max_length=1024)
            yield Input(placeholder="6-digit authenticator code", id="lock-code",
                        restrict=r"[0-9]*", max_length=6)
            yield Static(Text(""), id="lock-error", classes="-empty")

    def on_mount(self) -> None:
        self.query_one("#lock-password", Input).focus()

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        event.stop()
        password = self.query_one("#lock-password", Input)
        code = self.query_one("#lock-code", Input)
        if not password.value:
            password.focus()
        elif not code.value:
            code.focus()
        elif not self.busy:
            self.busy = True
            self._error("checking…")
            self.attempt(password.value, code.value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="unlock")
    def attempt(self, password: str, code: str) -> None:
        try:
            sessions.unlock(self.runtime, self.actor, password, code)
        except RefusedError as error:
            failed = str(error) == sessions.AUTH_FAILED
            result = self.Result(False, sessions.AUTH_FAILED if failed else str(error),
                                 ended=not failed)
        except Exception as error:  # a database error: one line
            result = self.Result(False, f"unlock failed: {describe_error(error)}")
        else:
            result = self.Result(True, "")
        if not get_current_worker().is_cancelled:
            self.post_message(result)

    def on_lock_screen_result(self, message: LockScreen.Result) -> None:
        self.busy = False
        if message.ok or message.ended:
            self.dismiss(message.ok)
            return
        self._error(message.text)
        for field in ("#lock-password", "#lock-code"):
            self.query_one(field, Input).value = ""
        self.query_one("#lock-password", Input).focus()

    def _error(self, text: str) -> None:
        widget = self.query_one("#lock-error", Static)
        widget.update(safe_text(text))
        widget.set_class(not text, "-empty")
