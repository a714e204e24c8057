"""The first screen: officer name, password and authenticator code.

`sessions.login` runs in a thread worker; a success is sent to the app as
:class:`LoginScreen.LoggedIn` (the app keeps the token and the `Actor` and opens the home
screen). Every failure reads "authentication failed", whichever factor was wrong, and
the password and code fields are emptied. Until the app has an actor, its navigation keys
and the command palette are refused (see ``PolysecApp.check_action``).

On the demo database, and only when started by `polysec demo`, a hint names the demo
officers, their passwords and their current codes (``services.demo.demo_login_hints``
enforces that rule; this screen asks only when ``settings.demo`` is set).
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from polysec_tui.errors import RefusedError
from polysec_tui.screens.widgets import ConsoleScreen, describe_error, safe_text
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor

TOTP_STEP_SECONDS = 30


class LoginScreen(ConsoleScreen):
    TITLE_TEXT = "Log in"
    BINDINGS: ClassVar[list[BindingType]] = []
    DEFAULT_CSS = """
    LoginScreen { align: center middle; }
    LoginScreen #login-box { width: 60; max-width: 100%; height: auto; padding: 0 1;
                             border: round $primary; }
    LoginScreen Input { margin: 0; }
    LoginScreen #login-reason { color: $warning; }
    LoginScreen #login-error { color: $error; text-style: bold; }
    LoginScreen #login-hints { color: $text-muted; }
    LoginScreen .-empty { display: none; }
    """

    class LoggedIn(Message):
        """Bubbles to the app, which starts the session."""

        def __init__(self, token: str, actor: Actor) -> None:
            super().__init__()
            self.token = token
            self.actor = actor

    class Failed(Message, bubble=False):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Hints(Message, bubble=False):
        def __init__(self, lines: list[str]) -> None:
            super().__init__()
            self.lines = lines

    busy = False
    _hint_timer: Timer | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="login-box") as box:
            box.border_title = "Officer login"
            yield Static(Text(""), id="login-reason", classes="-empty")
            yield Input(placeholder="officer name", id="login-name", max_length=64)
            yield Input(placeholder="password", password=True, id="login-password",
                        max_length=1024)
            yield Input(placeholder="6-digit authenticator code", id="login-code",
                        restrict=r"[0-9]*", max_length=6)
            yield Static(Text(""), id="login-error", classes="-empty")
            yield Static(Text(""), id="login-hints", classes="-empty")

    def on_mount(self) -> None:
        self.query_one("#login-name", Input).focus()
        if self.runtime.settings.demo:
            self.load_hints()

    # ------------------------------------------------------------------------ login

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        event.stop()
        fields = [self.query_one(f"#login-{n}", Input) for n in ("name", "password", "code")]
        empty = next((f for f in fields if not f.value), None)
        if empty is not None:
            empty.focus()
            return
        self.submit()

    def submit(self) -> None:
        if self.busy:
            return
        name = self.query_one("#login-name", Input).value.strip()
        password = self.query_one("#login-password", Input).value
        code = self.query_one("#login-code", Input).value
        self.busy = True
        self._show("#login-error", "checking…")
        self.attempt(name, password, code)

    @work(thread=True, exclusive=True, exit_on_error=False, group="login")
    def attempt(self, name: str, password: str, code: str) -> None:
        try:
            token, actor = sessions.login(self.runtime, name, password, code)
        except RefusedError:
            result: Message = self.Failed(sessions.AUTH_FAILED)
        except Exception as error:  # a database error: one line
            result = self.Failed(f"login failed: {describe_error(error)}")
        else:
            result = self.LoggedIn(token, actor)
        if not get_current_worker().is_cancelled:
            self.post_message(result)

    @on(LoggedIn)
    def _logged_in(self, message: LoggedIn) -> None:
        # Let it bubble on to the app; leave nothing typed behind for the next officer.
        self.busy = False
        self.reset(reason=None)

    def on_login_screen_failed(self, message: LoginScreen.Failed) -> None:
        self.busy = False
        self._show("#login-error", message.text)
        for field in ("#login-password", "#login-code"):
            self.query_one(field, Input).value = ""
        self.query_one("#login-password", Input).focus()

    def reset(self, reason: str | None) -> None:
        """Empty every field; ``reason`` says why the officer is back here (or None)."""
        for field in ("#login-name", "#login-password", "#login-code"):
            self.query_one(field, Input).value = ""
        self._show("#login-error", "")
        self._show("#login-reason", reason or "")
        self.query_one("#login-name", Input).focus()

    def _show(self, selector: str, text: str) -> None:
        widget = self.query_one(selector, Static)
        widget.update(safe_text(text))
        widget.set_class(not text, "-empty")

    # ------------------------------------------------------------- demo login hints

    @work(thread=True, exclusive=True, exit_on_error=False, group="login-hints")
    def load_hints(self) -> None:
        from polysec_tui.synthetic.demo import demo_login_hints

        try:
            hints = demo_login_hints(self.runtime)
        except RefusedError:
            return
        lines = ["Demo officers (name, role, password, code now):"]
        lines += [f"  {name:<6} {role:<8} {password:<24} {code}"
                  for name, role, password, code in hints]
        if not get_current_worker().is_cancelled and hints:
            self.post_message(self.Hints(lines))

    def on_login_screen_hints(self, message: LoginScreen.Hints) -> None:
        widget = self.query_one("#login-hints", Static)
        widget.update(Text("\n".join(message.lines)))
        widget.remove_class("-empty")
        # Refresh just after the next 30 s step begins (codes change then).
        into_step = self.clock().timestamp() % TOTP_STEP_SECONDS
        if self._hint_timer is not None:
            self._hint_timer.stop()
        self._hint_timer = self.set_timer(TOTP_STEP_SECONDS - into_step + 0.5, self.load_hints)
