"""Officer identity in the console: login, idle lock, expiry, the audit log and account
screens, and the demo's login hints. Pilot drives the app on every database with officers
whose TOTP secrets are known (tests.support.officers) and a clock the tests move.

Snapshots run on SQLite with a fixed database label and actors made in the test (no
random session ids on screen).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from sqlalchemy import update
from textual import events
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from polysec_tui.app import DESTINATIONS, HOME, PolysecApp
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import AuditLogEntry, Officer, OfficerSession
from polysec_tui.errors import RefusedError
from polysec_tui.screens.account import AccountScreen, RevealScreen
from polysec_tui.screens.auditlog import AuditLogScreen
from polysec_tui.screens.dashboard import DashboardScreen
from polysec_tui.screens.lock import LockScreen
from polysec_tui.screens.login import LoginScreen
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime, open_runtime
from polysec_tui.synthetic import demo
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest
from tests.support.officers import PASSWORDS, MovableClock, Staff, make_staff
from tests.support.tui import SnapshotRuntime, sync


@pytest.fixture
def staff(settings: Settings) -> Iterator[Staff]:
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    made = make_staff(rt, clock)
    ingest(rt, "accounts", account("A1"))
    yield made
    rt.engine.dispose()


def console(staff: Staff) -> PolysecApp:
    return PolysecApp(staff.rt, clock=staff.clock)


async def wait_for(pilot: Pilot[Any], ready: Callable[[], bool], what: str) -> None:
    for _ in range(300):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if ready() and not any(w.is_running for w in pilot.app.workers):
            return
    raise AssertionError(f"timed out waiting for {what}")


async def type_text(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*("space" if c == " " else c for c in text))


async def log_in(pilot: Pilot[Any], name: str, password: str, code: str) -> None:
    """Type into the login screen as an officer would: name, enter, password, enter..."""
    app = pilot.app
    assert isinstance(app.screen, LoginScreen)
    for value in (name, password, code):
        await type_text(pilot, value)
        await pilot.press("enter")
    await wait_for(pilot, lambda: not app.screen.busy if isinstance(app.screen, LoginScreen)
                   else True, "the login attempt")


async def logged_in(pilot: Pilot[Any], staff: Staff, name: str) -> None:
    await log_in(pilot, name, PASSWORDS[name], staff.next_code(name))
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen)
                   and pilot.app.screen.summary is not None, "the dashboard")


def text_of(app: PolysecApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def rows(app: PolysecApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[cell.plain if isinstance(cell, Text) else str(cell)
             for cell in table.get_row_at(i)] for i in range(table.row_count)]


def on_screen(app: PolysecApp) -> str:
    """Everything the terminal shows now, as the compositor draws it."""
    return app.export_screenshot()


async def go(pilot: Pilot[Any], key: str, screen: type) -> None:
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, screen), screen.__name__)


# ----------------------------------------------------------------------- login screen


@sync
async def test_wrong_factors_are_generic_and_nothing_is_reachable(staff: Staff) -> None:
    app = console(staff)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, LoginScreen)
        assert str(app.screen.query_one("#database", Static).render()) == (
            staff.rt.database_label)
        await log_in(pilot, "ann", "not-the-password-123", staff.next_code("ann"))
        assert text_of(app, "#login-error") == "authentication failed"
        assert app.screen.query_one("#login-password", Input).value == ""
        assert app.screen.query_one("#login-code", Input).value == ""
        assert app.screen.query_one("#login-name", Input).value == "ann"
        app.screen.query_one("#login-name", Input).value = ""
        app.screen.query_one("#login-name", Input).focus()
        await log_in(pilot, "ann", PASSWORDS["ann"], "000000")
        assert text_of(app, "#login-error") == "authentication failed"
        assert app.actor is None
        # No destination, no palette, no action reaches client data.
        app.set_focus(None)
        for key in [d.key for d in DESTINATIONS.values()] + ["ctrl+p"]:
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, LoginScreen), key
        await app.run_action(f"show({HOME!r})")
        app.action_command_palette()
        await pilot.pause()
        assert isinstance(app.screen, LoginScreen)
        assert not isinstance(app.screen, CommandPalette)
        assert app.current_mode == "login"
        assert app.check_action("show", ("dashboard",)) is False


@sync
async def test_login_reaches_the_dashboard(staff: Staff) -> None:
    app = console(staff)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("escape")  # before a login there is nowhere to go back to
        await pilot.pause()
        assert app.is_running and app.actor is None
        await logged_in(pilot, staff, "sam")
        assert app.actor is not None and app.actor.name == "sam"
        assert app.actor.session_id is not None
        assert isinstance(app.screen, DashboardScreen)
        assert app.screen.actor == app.actor
        await go(pilot, "3", AuditLogScreen)
        system = [c.title for c in app.get_system_commands(app.screen)]
        assert "Screenshot" not in system


@sync
async def test_a_burst_of_keys_fills_each_field_with_its_own(staff: Staff) -> None:
    """Name, tab, password, tab, code typed (or pasted, or auto-typed by a password
    manager) faster than the console handles them: the tab moves the focus before the
    next key is handed on, so no part of the password lands in the unmasked name
    field."""
    app = console(staff)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        typed = "ann\t" + PASSWORDS["ann"] + "\t"
        for char in typed:  # all queued before the console handles the first
            key = "tab" if char == "\t" else char
            app.post_message(events.Key(key, None if char == "\t" else char))
        await pilot.pause()
        await pilot.pause()
        screen = app.screen
        assert screen.query_one("#login-name", Input).value == "ann"
        assert screen.query_one("#login-password", Input).value == PASSWORDS["ann"]
        assert screen.focused is screen.query_one("#login-code", Input)


# --------------------------------------------------------------------- idle and expiry


@sync
async def test_idle_lock_covers_everything_and_unlock_resumes(staff: Staff) -> None:
    app = console(staff)
    async with app.run_test(size=(80, 24)) as pilot:
        await logged_in(pilot, staff, "sam")
        await go(pilot, "2", AccountScreen)
        await type_text(pilot, "A1")
        await pilot.press("enter")
        await wait_for(pilot, lambda: getattr(app.screen, "summary", None) is not None,
                       "the account")
        assert "a***@e***.com" in on_screen(app)
        # Active: no lock.
        staff.clock.advance(minutes=10)
        app.check_session()
        await wait_for(pilot, lambda: True, "the session check")
        assert not app.locked
        staff.clock.advance(minutes=6)  # 16 minutes without input
        app.check_session()
        await wait_for(pilot, lambda: isinstance(app.screen, LockScreen), "the lock screen")
        assert app.locked
        shown = on_screen(app)
        assert "a***@e***.com" not in shown and "A1" not in shown
        assert "sam" in text_of(app, "#lock-officer")
        assert app.screen.styles.background.a == 1.0
        assert app.screen.size == app.size
        for key in ("1", "3", "ctrl+p", "escape"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, LockScreen), key
        # Wrong code, then the right one.
        await type_text(pilot, PASSWORDS["sam"])
        await pilot.press("enter")
        await type_text(pilot, staff.code("sam", offset_steps=-3))
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app.screen.busy, "the unlock attempt")
        assert isinstance(app.screen, LockScreen)
        assert text_of(app, "#lock-error") == "authentication failed"
        assert app.screen.query_one("#lock-password", Input).value == ""
        await type_text(pilot, PASSWORDS["sam"])
        await pilot.press("enter")
        await type_text(pilot, staff.next_code("sam"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, AccountScreen), "the unlock")
        assert not app.locked
        assert app.actor is not None and sessions.session_state(staff.rt, app.actor) is None


@sync
async def test_disabled_officer_goes_back_to_login(staff: Staff) -> None:
    app = console(staff)
    async with app.run_test(size=(80, 24)) as pilot:
        await logged_in(pilot, staff, "sam")
        staff.clock.advance(minutes=20)
        app.check_session()
        await wait_for(pilot, lambda: isinstance(app.screen, LockScreen), "the lock screen")
        officers.set_disabled(staff.rt, staff.actors["root"], "sam", True)
        app.check_session()
        await wait_for(pilot, lambda: isinstance(app.screen, LoginScreen), "the login screen")
        assert app.actor is None and app.token is None and not app.locked
        assert text_of(app, "#login-reason") == "session ended"
        assert app.check_action("show", ("dashboard",)) is False
        app.set_focus(None)
        await pilot.press("1")
        await pilot.pause()
        assert isinstance(app.screen, LoginScreen)
        assert set(app._screen_stacks) == {"login"}  # the destinations' screens are gone
        app.screen.query_one("#login-name", Input).focus()
        # Another officer logs in and gets fresh screens.
        await logged_in(pilot, staff, "sue")
        assert app.actor is not None and app.actor.name == "sue"


@sync
async def test_expired_session_goes_back_to_login(staff: Staff) -> None:
    app = console(staff)
    async with app.run_test(size=(80, 24)) as pilot:
        await logged_in(pilot, staff, "ann")
        staff.clock.advance(hours=13)
        app.last_input = staff.clock()  # busy all along: no idle lock, only the expiry
        app.check_session()
        await wait_for(pilot, lambda: isinstance(app.screen, LoginScreen), "the login")
        assert text_of(app, "#login-reason") == "session expired"


# ------------------------------------------------------------------- account, reveal


async def reveal(pilot: Pilot[Any], staff: Staff, name: str) -> RevealScreen:
    app = pilot.app
    await logged_in(pilot, staff, name)
    await go(pilot, "2", AccountScreen)
    await type_text(pilot, "A1")
    await pilot.press("enter")
    await wait_for(pilot, lambda: getattr(app.screen, "summary", None) is not None,
                   "the account")
    await go(pilot, "v", RevealScreen)
    await type_text(pilot, "case 4711 chargeback")
    await pilot.press("enter")
    await wait_for(pilot, lambda: True, "the reveal")
    assert isinstance(app.screen, RevealScreen)
    return app.screen


@sync
async def test_analyst_is_refused_a_reveal(staff: Staff) -> None:
    app = console(staff)
    async with app.run_test(size=(80, 24)) as pilot:
        modal = await reveal(pilot, staff, "ann")
        assert text_of(app, "#reveal-error") == (
            "officer ann (analyst) may not pii.reveal; needs senior, admin")
        assert not modal.query_one("#reveal-value").display
        assert "a1.doe@example.com" not in on_screen(app)


@sync
async def test_senior_sees_the_value_in_the_modal_only(staff: Staff) -> None:
    app = console(staff)
    async with app.run_test(size=(80, 24)) as pilot:
        await reveal(pilot, staff, "sam")
        assert text_of(app, "#reveal-value") == "Email: a1.doe@example.com"
        assert "a1.doe@example.com" in on_screen(app)
        assert not any("example.com" in n.message for n in app._notifications)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, AccountScreen), "the account")
        assert "a1.doe@example.com" not in on_screen(app)
    with staff.rt.sessions() as session:
        from polysec_tui.services.auditchain import tail

        (entry,) = tail(session, 1, action="pii.reveal")
    assert entry.officer == "sam" and entry.details == {
        "field": "email", "reason": "case 4711 chargeback"}


# -------------------------------------------------------------------------- audit log


@sync
async def test_audit_log_lists_filters_and_verifies(staff: Staff) -> None:
    app = console(staff)
    async with app.run_test(size=(120, 30)) as pilot:
        await logged_in(pilot, staff, "sam")
        await go(pilot, "3", AuditLogScreen)
        await wait_for(pilot, lambda: len(rows(app, "#audit-log")) > 0, "the entries")
        listed = rows(app, "#audit-log")
        seqs = [int(r[0]) for r in listed]
        assert seqs == sorted(seqs, reverse=True)
        assert listed[0][2:4] == ["sam", "session.start"]
        app.screen.query_one("#audit-officer", Input).focus()
        await type_text(pilot, "root")
        await pilot.press("enter")
        await wait_for(pilot, lambda: {r[2] for r in rows(app, "#audit-log")} == {"root"},
                       "the filter")
        assert ["root", "officer.bootstrap", "officer:root", "role=admin"] in [
            r[2:] for r in rows(app, "#audit-log")]
        app.screen.query_one("#audit-log").focus()
        await pilot.press("v")
        await wait_for(pilot, lambda: text_of(app, "#audit-status").startswith("chain"),
                       "the verification")
        assert text_of(app, "#audit-status").startswith("chain ok: ")
        with staff.rt.transaction() as session:
            session.execute(update(AuditLogEntry).where(AuditLogEntry.seq == 4)
                            .values(details='{"role":"forged"}'))
        await pilot.press("v")
        await wait_for(pilot, lambda: "BROKEN" in text_of(app, "#audit-status"),
                       "the verification")
        assert text_of(app, "#audit-status").startswith("chain BROKEN at seq 4: ")


@sync
async def test_analyst_is_refused_the_audit_log(staff: Staff) -> None:
    app = console(staff)
    async with app.run_test(size=(80, 24)) as pilot:
        await logged_in(pilot, staff, "ann")
        await go(pilot, "3", AuditLogScreen)
        await wait_for(pilot, lambda: "may not" in text_of(app, "#audit-status"), "refusal")
        assert text_of(app, "#audit-status") == (
            "officer ann (analyst) may not auditlog.read; needs senior, admin, automation")
        assert rows(app, "#audit-log") == []
        await pilot.press("v")
        await wait_for(pilot, lambda: True, "the verification")
        assert "may not auditlog.read" in text_of(app, "#audit-status")
        assert app.is_running


# ------------------------------------------------------------------ demo login hints


@pytest.fixture(scope="module")
def demo_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from polysec_tui.synthetic.demo import build_demo
    from polysec_tui.synthetic.generator import DemoSpec

    base = tmp_path_factory.mktemp("demo")
    settings = Settings(f"sqlite:///{base / 'demo.db'}", base / "demo-keyring.json",
                        demo=True)
    build_demo(settings, DemoSpec(accounts=50, days=5, anchor=FIXED_NOW))
    return settings


def test_demo_hints_give_working_logins(demo_settings: Settings) -> None:
    rt = open_runtime(demo_settings)
    try:
        hints = demo.demo_login_hints(rt)
        assert [(n, r) for n, r, _p, _c in hints] == [
            ("alice", "analyst"), ("sam", "senior"), ("ada", "admin")]
        name, _role, password, code = hints[1]
        _token, actor = sessions.login(rt, name, password, code)
        assert actor.role == "senior"
    finally:
        rt.engine.dispose()


def test_demo_hints_refused_without_the_demo_flag(demo_settings: Settings) -> None:
    rt = open_runtime(dataclasses.replace(demo_settings, demo=False))
    try:
        with pytest.raises(RefusedError, match="polysec demo"):
            demo.demo_login_hints(rt)
    finally:
        rt.engine.dispose()


def test_demo_hints_refused_on_a_real_database(runtime: Runtime) -> None:
    rt = Runtime(dataclasses.replace(runtime.settings, demo=True), runtime.engine,
                 runtime.keyring, runtime.clock)
    officers.bootstrap_admin(rt, "ada", "demo-admin-passphrase")
    with pytest.raises(RefusedError, match="not the demo database"):
        demo.demo_login_hints(rt)


def test_only_polysec_demo_sets_the_flag() -> None:
    from polysec_tui.config import resolve_settings

    settings = resolve_settings("sqlite:///x.db", "k.json", None)
    assert settings.demo is False and settings.for_demo().demo is True


@sync
async def test_login_screen_shows_hints_only_for_the_demo(demo_settings: Settings) -> None:
    for flag in (True, False):
        rt = open_runtime(dataclasses.replace(demo_settings, demo=flag))
        app = PolysecApp(rt)
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                await wait_for(pilot, lambda: True, "the hints")
                hints = app.screen.query_one("#login-hints", Static)
                if flag:
                    shown = str(hints.render())
                    assert "sam" in shown and "demo-senior-passphrase" in shown
                    assert hints.display
                else:
                    assert not hints.display and str(hints.render()) == ""
        finally:
            rt.engine.dispose()


# ------------------------------------------------------------------------- snapshots


SAM = Actor(uuid.UUID(int=2), "sam", "senior", uuid.UUID(int=20))
SAM_TOKEN = "sam-snapshot-session"


@pytest.fixture
def snapshot_rt(tmp_path: Path) -> Iterator[Runtime]:
    keyring = tmp_path / "keyring.json"
    write_new_keyring(keyring, Keyring.generate(now=FIXED_NOW))
    url = f"sqlite:///{tmp_path / 'snapshot.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    rt = SnapshotRuntime(Settings(url, keyring), engine, load_keyring(keyring),
                         clock=lambda: FIXED_NOW)
    ingest(rt, "accounts", account("A1"), account("A2"))
    with rt.transaction() as session:
        entries: list[tuple[int, str, str, str, dict[str, Any]]] = [
            (50, "root", "officer.add", "officer:sam", {"role": "senior"}),
            (40, "sam", "auth.login", "officer:sam", {"result": "ok"}),
            (30, "ann", "auth.login", "officer:ann", {"result": "failed"}),
            (20, "sam", "pii.reveal", "account:A1", {"field": "phone",
                                                     "reason": "[b]case[/b] 4711"}),
            (10, "root", "officer.disable", "officer:ann", {"sessions_ended": 1}),
        ]
        for minutes, officer, action, target, details in entries:
            rt.audit.append(session, officer=officer, action=action,
                            at=FIXED_NOW - timedelta(minutes=minutes), target=target,
                            details=details)
        # SAM's session is in the database: every SESSION_CHECK_SECONDS the console asks
        # whether it still holds, and one the database does not know ends it (back to the
        # login screen), so a snapshot taken after 10 s on a busy machine showed that.
        session.add(Officer(id=SAM.officer_id, name=SAM.name, role=SAM.role,
                            created_at=FIXED_NOW - timedelta(days=30)))
        session.flush()
        session.add(OfficerSession(id=SAM.session_id, officer_id=SAM.officer_id,
                                   kind="interactive", token_hash=sessions.token_hash(SAM_TOKEN),
                                   created_at=FIXED_NOW, last_seen_at=FIXED_NOW,
                                   expires_at=FIXED_NOW + timedelta(hours=12)))
    yield rt
    engine.dispose()


async def still(pilot: Pilot[Any]) -> None:
    """Workers done, no blinking cursor."""
    await wait_for(pilot, lambda: True, "the screen")
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


def _login(pilot: Pilot[Any]) -> Any:
    return still(pilot)


async def _lock(pilot: Pilot[Any]) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen), "dashboard")
    app = pilot.app
    assert isinstance(app, PolysecApp)
    app.lock()
    await still(pilot)


async def _audit(pilot: Pilot[Any]) -> None:
    await pilot.press("3")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, AuditLogScreen), "audit log")
    await still(pilot)


async def _account(pilot: Pilot[Any]) -> None:
    await pilot.press("2")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, AccountScreen), "account")
    await type_text(pilot, "A1")
    await pilot.press("enter")
    await still(pilot)


SNAPSHOTS = {"login": _login, "lock": _lock, "auditlog": _audit, "account": _account}


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("screen", list(SNAPSHOTS))
def test_snapshot(snap_compare: Any, snapshot_rt: Runtime, screen: str,
                  size: tuple[int, int]) -> None:
    session = None if screen == "login" else (SAM_TOKEN, SAM)
    app = PolysecApp(snapshot_rt, session=session)
    assert snap_compare(app, terminal_size=size, run_before=SNAPSHOTS[screen])
