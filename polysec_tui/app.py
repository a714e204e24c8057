"""The Textual console: navigation between screens and the app-wide safety rules.

Why it is built this way:

- **Dependencies come in through the constructor.** ``PolysecApp(runtime, clock=...)``:
  tests run it on a temporary database with a pinned clock; nothing is opened at import.
- **Officer identity first.** The app opens on the login screen (its own mode). A login
  gives the app a session token and an ``Actor``; only then are the destinations' modes
  created, each screen built with that actor (services check its permissions). Until
  then, and while the session is locked, the navigation keys and the command palette are
  refused (``check_action`` and the actions themselves).
- **Idle lock and expiry.** Key presses and mouse clicks stamp ``last_input`` with the
  injected clock. Every ``SESSION_CHECK_SECONDS`` a timer compares it with the session
  policy's idle time (locking pushes the opaque :class:`LockScreen`) and asks the database
  in a worker for ``session_state``: a session that has ended, expired or whose officer
  was disabled sends the app back to the login screen with the reason, and every
  destination screen (and what it showed) is discarded. While the officer is active the
  same worker refreshes the session's idle timer in the database (``authenticate``).
  Quitting ends the session (``run_app``).
- **Navigation is a registry.** :data:`DESTINATIONS` maps a screen name to a key, a title,
  a description and the screen's class (``"module:Class"``, imported when needed). Each
  entry becomes a Textual *mode* (its own screen stack, so a screen's modals stay with
  it), a key binding and a command-palette entry. To add a screen: write
  ``screens/<name>.py`` with a ``ConsoleScreen`` subclass (it takes runtime, clock and
  officer from the app) and add one ``Destination`` line below. An account's views
  (timeline, anomalies, 2FA reset) are opened by the app for any screen
  (``open_account_view``), so screens never import each other for them.
- **The login screen first.** Only the login and lock screens are imported with the app;
  the destinations' modules are imported in a thread once the login screen is drawn
  (``preload_screens``), and a login waits for that thread before it builds them.
- **The command palette lists the actions of the current screen** (``ScreenCommands``:
  every shown binding of the screen, its focused widget and the app) and Textual's system
  commands *without* "Screenshot": screens show client data, and an SVG of them on disk is
  a leak. ``action_screenshot`` is refused as well, because markup could name it.
- **No tracebacks with local variables.** Textual's crash report shows locals by default
  (``Traceback(show_locals=True)``), which would print keys, passwords and TOTP seeds.
  ``_fatal_error`` is replaced: the exception type only, or a traceback without locals
  when ``POLYSEC_DEBUG=1`` (the same rule as ``cli.main``).
- **NO_COLOR**: Textual honours it by itself. ``App.__init__`` reads ``NO_COLOR`` from the
  environment, sets ``app.no_color`` and adds its ``Monochrome`` line filter (greyscale),
  and ``App:nocolor`` can be used in CSS. We rely on that and make sure nothing carries
  meaning through colour alone: the demo badge is a word (drawn reversed under NO_COLOR),
  failures are labelled "failed", alert cards keep their numbers.
- **Untrusted text is never markup**: see ``screens.widgets.safe_text``; errors are
  notified with ``markup=False``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from polysec_tui.errors import PolysecError

# Re-exported for `polysec keys-help` (commands reach the console only through the app).
from polysec_tui.screens.keymap import binding_catalogue as binding_catalogue
from polysec_tui.screens.keymap import keymap_from_settings as keymap_from_settings
from polysec_tui.screens.keymap import unknown_ids as unknown_ids
from polysec_tui.screens.lock import LockScreen
from polysec_tui.screens.login import LoginScreen
from polysec_tui.screens.widgets import ConsoleError, ConsoleScreen, describe_error
from polysec_tui.services.officers import notifications, sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.officers.sessions import SessionPolicy
from polysec_tui.services.runtime import Clock, Runtime


def screen_class(where: str) -> type[Screen[Any]]:
    """The screen class at ``"module:Class"``, its module imported now: the console draws
    the login screen first and imports the others while the officer types."""
    module, name = where.split(":")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Screen)
    return cls


@dataclass(frozen=True)
class Destination:
    """A top-level screen of the console."""

    key: str  # the key that shows it, also shown in the footer
    title: str
    description: str  # shown in the command palette
    screen: str  # "module:Class", imported when first needed (`screen_class`)


# The views of one account that any screen can open with the account's id
# (`ConsoleScreen.open_account`): the app imports them, so screens need not import each
# other.
ACCOUNT_VIEWS: dict[str, str] = {
    "timeline": "polysec_tui.screens.timeline:TimelineScreen",
    "anomalies": "polysec_tui.screens.anomalies:AnomaliesScreen",
    "twofa": "polysec_tui.screens.twofa:TwoFactorResetScreen",
}
# One withdrawal's detail, opened with its id from any screen (the approvals inbox).
WITHDRAWAL_VIEW = "polysec_tui.screens.withdrawals:WithdrawalDetailScreen"


# name -> destination; the first one is the home screen. Keys are digits so that they
# never collide with a screen's own letter bindings. The screens' modules are imported
# after the login screen is drawn (see `PolysecApp.preload_screens`), not before: about
# 0.25 s of CPU of the start-up went into importing screens that the login does not need.
DESTINATIONS: dict[str, Destination] = {
    "dashboard": Destination(
        "1", "Dashboard", "Figures of the database and its newest events",
        "polysec_tui.screens.dashboard:DashboardScreen",
    ),
    "account": Destination(
        "2", "Account", "Look up an account by id or email (PII masked)",
        "polysec_tui.screens.account:AccountScreen",
    ),
    "auditlog": Destination(
        "3", "Audit log", "Officer audit log and a check of its hash chain",
        "polysec_tui.screens.auditlog:AuditLogScreen",
    ),
    "withdrawals": Destination(
        "4", "Withdrawals", "The review queue: held withdrawals, their rule hits, decisions",
        "polysec_tui.screens.withdrawals:WithdrawalQueueScreen",
    ),
    "audit": Destination(
        "5", "Audit checks", "Run the audit checks; findings by severity; past runs",
        "polysec_tui.screens.audit:AuditChecksScreen",
    ),
    "anomalies": Destination(
        "6", "Anomalies", "Login anomalies, newest day and most severe first",
        "polysec_tui.screens.anomalies:AnomaliesScreen",
    ),
    "timeline": Destination(
        "7", "Timeline", "One account's story: events, logins per day, login places",
        "polysec_tui.screens.timeline:TimelineScreen",
    ),
    "approvals": Destination(
        "8", "Approvals", "Four-eyes requests of every kind with their evidence: approve or deny",
        "polysec_tui.screens.approvals:ApprovalsScreen",
    ),
    "backups": Destination(
        "9", "Backups", "Encrypted backups: catalogue, create, verify, restore",
        "polysec_tui.screens.backups:BackupsScreen",
    ),
    "incidents": Destination(
        "0", "Incidents", "Open and contained incidents; one incident's timeline and notes",
        "polysec_tui.screens.incidents:IncidentsScreen",
    ),
}
HOME = next(iter(DESTINATIONS))
LOGIN = "login"  # the mode of the login screen (not a destination: no key)
HIDDEN_SYSTEM_COMMANDS = frozenset({"Screenshot"})
# Actions that act on client data or show it: refused without a live, unlocked session.
SESSION_ACTIONS = frozenset({"show", "command_palette"})
SESSION_CHECK_SECONDS = 10.0
NOTIFICATION_SECONDS = 3.0  # how often the console asks for its officer's notifications
COLLECT_SECONDS = 15.0  # how often the console's own process may run a full collection
COLLECT_IDLE_SECONDS = 2.0  # ... when no key was pressed for this long
COLLECT_LATEST_SECONDS = 300.0  # ... and at the latest after this, busy or not
NOTIFICATION_TOAST_SECONDS = 20
# Input that proves an officer is at the terminal (a mouse merely moving does not).
ACTIVITY = (events.Key, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp)


class ScreenCommands(Provider):
    """Command palette entries: the actions bound on the current screen."""

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        app = self.app
        seen: set[str] = {"quit"}  # already a system command ("Quit")
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if binding.system or not binding.show or not binding.description:
                continue
            if binding.action in seen:
                continue
            seen.add(binding.action)
            key = app.get_key_display(binding)
            help_text = f"{key} · {binding.tooltip}" if binding.tooltip else f"key {key}"
            yield binding.description, help_text, partial(
                app.run_action, binding.action, active.node
            )

    async def discover(self) -> Hits:
        for name, help_text, command in self._commands():
            yield DiscoveryHit(name, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, command in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, help=help_text)


class PolysecApp(App[None]):
    TITLE = "polysec"
    # Under NO_COLOR, say with shapes what colours say otherwise. (App-level CSS: widgets'
    # DEFAULT_CSS is scoped to the widget and cannot select on the app's pseudo-class.)
    CSS = """
    App:nocolor TopBar #demo-badge { text-style: bold reverse; }
    App:nocolor FigureCard.-alert { border: heavy $foreground; }
    """
    DEFAULT_MODE = LOGIN
    COMMANDS = App.COMMANDS | {ScreenCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Leave the console"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit-ctrl", show=False, priority=True,
                tooltip="Leave the console (from anywhere, a field included)"),
        # Tab and shift+tab move the focus here, before the keys typed after them are
        # handed on: a screen's own binding runs only once the focused field has taken
        # its queue, so "name<tab>password" typed or pasted in one burst put part of
        # the password into the (unmasked) name field.
        # (Textual's own actions: the help overlay sums them up with the other moves.)
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True,
                id="app.focus-next", tooltip="The next field or table"),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False,
                priority=True, id="app.focus-previous",
                tooltip="The previous field or table"),
        # Every key of the screen shown, in groups (screens/keyhelp.py).
        Binding("question_mark,f1", "key_help", "Keys", id="app.keys", show=False,
                tooltip="Every key of this screen (? or F1 again closes it)"),
        *(
            Binding(dest.key, f"show({name!r})", dest.title, id=f"app.show.{name}",
                    tooltip=dest.description)
            for name, dest in DESTINATIONS.items()
        ),
    ]

    demo: reactive[bool] = reactive(False)

    def __init__(self, runtime: Runtime, *, clock: Clock | None = None,
                 session: tuple[str, Actor] | None = None, own_gc: bool = False) -> None:
        """``session``: a token and actor from `sessions.login` to start logged in
        (tests); otherwise the officer logs in on the login screen. ``own_gc``: the
        process is this console's alone (`run_app`), so it may tune the garbage collector
        (`_take_over_gc`); never in a process that runs other things, such as the tests."""
        super().__init__()
        self.runtime = runtime
        self.clock: Clock = clock or runtime.clock
        self.policy = SessionPolicy.from_settings(runtime.settings)
        self.actor: Actor | None = None
        self.token: str | None = None
        self.locked = False
        self.last_input = self.clock()
        self._last_touch = self.last_input
        self._initial_session = session
        self.login_screen: LoginScreen | None = None
        self.keymap = keymap_from_settings(runtime.settings)  # [keys]; refused if malformed
        self.add_mode(LOGIN, self._make_login_screen)
        self._preloading: threading.Thread | None = None
        self.own_gc = own_gc
        self._last_key = self._last_collect = time.monotonic()

    def _make_login_screen(self) -> LoginScreen:
        self.login_screen = LoginScreen()
        return self.login_screen

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        self.sub_title = self.runtime.database_label
        self.load_identity()
        self.set_interval(SESSION_CHECK_SECONDS, self.check_session)
        self.set_interval(NOTIFICATION_SECONDS, self.check_notifications)
        self.call_after_refresh(self.preload_screens)
        if self.own_gc:
            self.set_interval(COLLECT_SECONDS, self._collect_when_idle)
        if self._initial_session is not None:
            token, actor = self._initial_session
            self._initial_session = None
            self.start_session(token, actor)

    def preload_screens(self) -> None:
        """Once the first frame is drawn: import the destinations' modules in a thread
        while the officer types (start-up draws the login screen without them)."""
        if self._preloading is None:
            self._preloading = threading.Thread(target=self._preload, name="polysec-preload",
                                                daemon=True)
            self._preloading.start()

    def _preload(self) -> None:
        """In the preload thread. It never waits for the event loop (`call_from_thread`
        would): a login that comes first waits for this thread (`start_session`)."""
        _import_destinations()
        if self.own_gc:
            _freeze_modules()
        if self.keymap:  # the screens are loaded: every binding id is known now
            with contextlib.suppress(Exception):
                unknown = unknown_ids(self.keymap, binding_catalogue(PolysecApp, self.keymap))
                if unknown and self._loop is not None:
                    self._loop.call_soon_threadsafe(functools.partial(
                        self.notify, f"[keys] names no binding of the console: "
                        f"{', '.join(unknown)} (polysec keys-help lists them)",
                        severity="warning", markup=False, timeout=20))

    def _collect_when_idle(self) -> None:
        """The console's own full collections (``own_gc``, see `_freeze_modules`): when no
        key was pressed for a moment, or every 5 min at the latest."""
        now = time.monotonic()
        if (now - self._last_key >= COLLECT_IDLE_SECONDS
                or now - self._last_collect >= COLLECT_LATEST_SECONDS):
            gc.collect()
            self._last_collect = time.monotonic()

    def watch_demo(self) -> None:
        self.refresh_bindings()  # the demo's own keys (dashboard D) appear

    @work(thread=True, exclusive=True, exit_on_error=False, group="identity")
    def load_identity(self) -> None:
        demo = self.runtime.is_demo()
        self.call_from_thread(setattr, self, "demo", demo)

    # ----------------------------------------------------------------- the session

    @property
    def unlocked(self) -> bool:
        return self.actor is not None and not self.locked

    @on(LoginScreen.LoggedIn)
    def _logged_in(self, message: LoginScreen.LoggedIn) -> None:
        self.start_session(message.token, message.actor)

    def start_session(self, token: str, actor: Actor) -> None:
        """Build the destinations for ``actor`` and show the home screen."""
        self.actor, self.token, self.locked = actor, token, False
        self.last_input = self._last_touch = self.clock()
        if self._preloading is not None:
            # Never import a module in two threads at once (module locks); the officer
            # took longer to log in than the imports take, so this rarely waits.
            self._preloading.join()
        for name, dest in DESTINATIONS.items():
            self.add_mode(name, screen_class(dest.screen))
        self.switch_mode(HOME)

    def open_account_view(self, view: str, account_id: uuid.UUID) -> None:
        """Show one of an account's views (`ACCOUNT_VIEWS`) over the current screen."""
        view_class: Any = screen_class(ACCOUNT_VIEWS[view])  # takes the account's id
        self.push_screen(view_class(account_id))

    def open_withdrawal_view(self, ref: str) -> None:
        """Show one withdrawal's detail over the current screen."""
        detail_class: Any = screen_class(WITHDRAWAL_VIEW)  # takes the withdrawal's id
        self.push_screen(detail_class(ref))

    def end_session(self, reason: str | None) -> None:
        """Back to the login screen; every destination screen (and its data) is dropped."""
        self.actor = self.token = None
        self.locked = False
        self.clear_notifications()
        self.switch_mode(LOGIN)
        for name in DESTINATIONS:
            if name in self._modes:
                self.remove_mode(name)
        if self.login_screen is not None:
            self.login_screen.reset(reason)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, ACTIVITY):
            self._last_key = time.monotonic()
            if not self.locked:
                self.last_input = self.clock()
        await super().on_event(event)

    def check_session(self) -> None:
        """The timer: lock when idle too long; ask the database whether the session
        still holds (and refresh its idle timer if the officer was active)."""
        if self.actor is None:
            return
        if not self.locked and self.clock() - self.last_input > self.policy.idle:
            self.lock()
        touch = not self.locked and self.last_input > self._last_touch
        if touch:
            self._last_touch = self.last_input
        self._check_in_database(self.actor, self.token if touch else None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="session")
    def _check_in_database(self, actor: Actor, touch_token: str | None) -> None:
        reason = sessions.session_state(self.runtime, actor, self.policy)
        if reason is None and touch_token is not None:
            try:
                sessions.authenticate(self.runtime, touch_token, self.policy)
            except PolysecError as refused:
                reason = str(refused)
        self.call_from_thread(self._session_checked, actor, reason)

    def _session_checked(self, actor: Actor, reason: str | None) -> None:
        if reason is None or actor is not self.actor:
            return
        if reason.startswith("session locked"):  # idle: the lock screen can fix it
            if not self.locked:
                self.lock()
            return
        self.end_session(reason.split(";")[0])

    def check_notifications(self) -> None:
        """The timer: what the officer should learn (their requests decided, a claim
        moved), shown once as toasts. Not while locked: they wait for the unlock."""
        if self.unlocked and self.actor is not None:
            self._take_notifications(self.actor)

    @work(thread=True, exclusive=True, exit_on_error=False, group="notifications")
    def _take_notifications(self, actor: Actor) -> None:
        taken = notifications.take(self.runtime, actor)
        if taken:
            self.call_from_thread(self._show_notifications, actor, taken)

    def _show_notifications(self, actor: Actor,
                            taken: list[notifications.NotificationView]) -> None:
        if actor is not self.actor:
            return
        for note in taken:
            self.notify(note.text, title=f"For you · {note.at:%H:%M} UTC", markup=False,
                        timeout=NOTIFICATION_TOAST_SECONDS,
                        severity="error" if note.kind.endswith("denied") else "information")
            if isinstance(self.screen, ConsoleScreen):
                self.screen.notified(note.subject)
        self.bell()

    def lock(self) -> None:
        """Cover everything with the lock screen until the officer unlocks."""
        if self.actor is None or self.locked:
            return
        self.locked = True
        self.clear_notifications()
        minutes = int(self.policy.idle.total_seconds() // 60)
        self.push_screen(LockScreen(self.runtime, self.actor, minutes), self._after_lock)

    def _after_lock(self, unlocked: bool | None) -> None:
        if unlocked:
            self.locked = False
            self.last_input = self._last_touch = self.clock()
        else:
            self.end_session("session ended; log in again")

    # ------------------------------------------------------------------ navigation

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.unlocked or action not in SESSION_ACTIONS

    def action_show(self, name: str) -> None:
        if not self.unlocked:
            self.bell()
            return
        if name in DESTINATIONS:
            self.switch_mode(name)

    def action_key_help(self) -> None:
        """Every key of the screen shown, in groups; closed by the same key."""
        from polysec_tui.screens.keyhelp import KeyHelpScreen, key_groups

        if isinstance(self.screen, KeyHelpScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(KeyHelpScreen(key_groups(self.screen)))

    def action_command_palette(self) -> None:
        if self.unlocked:
            super().action_command_palette()

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Refused: screens show client data (the palette command is removed too)."""
        self.notify("Screenshots are disabled in polysec.", severity="warning", markup=False)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title not in HIDDEN_SYSTEM_COMMANDS:
                yield command

    @on(ConsoleError)
    def show_error(self, message: ConsoleError) -> None:
        """The one place background failures reach the officer (never as markup)."""
        self.notify(message.text, title=message.title, severity="error", markup=False,
                    timeout=10)

    @on(Worker.StateChanged)
    def _app_worker_failed(self, event: Worker.StateChanged) -> None:
        error = event.worker.error
        if event.state is WorkerState.ERROR and error is not None:
            self.post_message(ConsoleError(f"{event.worker.group} failed", describe_error(error)))

    def _fatal_error(self) -> None:
        """Textual's crash report, without local variables (see the module docstring)."""
        from rich.traceback import Traceback

        self.bell()
        error = sys.exc_info()[1] or self._exception
        if error is not None and os.environ.get("POLYSEC_DEBUG", "").lower() in {"1", "true",
                                                                                  "yes", "on"}:
            report: Any = Traceback.from_exception(
                type(error), error, error.__traceback__, show_locals=False, width=None
            )
        else:
            name = type(error).__name__ if error is not None else "unknown error"
            report = f"polysec: internal error: {name} (set POLYSEC_DEBUG=1 for details)"
        self._exit_renderables.append(report)
        self._close_messages_no_wait()


def _import_destinations() -> None:
    for dest in DESTINATIONS.values():
        # A module that fails here fails again in `screen_class`, which reports it.
        with contextlib.suppress(Exception):
            importlib.import_module(dest.screen.split(":")[0])


def _freeze_modules() -> None:
    """Every module the console uses is loaded now and lives as long as the process:
    frozen, out of the cyclic collector's sight. And the full collections, which walk
    everything else (30 to 130 ms with the queue's and the tables' caches; one struck
    every fifth page of the queue), run between key presses instead of in the middle of
    a repaint: Python's own only after a million young collections, practically never;
    the console's (`PolysecApp._collect_when_idle`) when no key was pressed for a moment.
    Only in a process of the console's own (`own_gc`): `polysec tui` and `polysec demo`."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000)


def run_app(runtime: Runtime) -> None:
    """Run the console in the terminal (`polysec tui`, `polysec demo`); quitting ends the
    officer's session."""
    app = PolysecApp(runtime, own_gc=True)
    try:
        app.run()
    finally:
        if app.token is not None:
            sessions.logout(runtime, app.token)


__all__ = ["DESTINATIONS", "Destination", "PolysecApp", "ScreenCommands", "run_app"]
