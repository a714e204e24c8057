"""Incidents and lockdown in the console, driven by Pilot: the lockdown confirmation lists
exactly what will happen and needs a reason and a fresh code; the incidents screen and
an incident's timeline, notes, containment and closing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from rich.text import Text
from sqlalchemy import select, update
from textual.widgets import DataTable, Input, Select, Static

from polysec_tui.app import DESTINATIONS, PolysecApp
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import Account, ClientSession, Withdrawal
from polysec_tui.screens.dashboard import DashboardScreen
from polysec_tui.screens.incidents import (
    AttachScreen,
    CloseIncidentScreen,
    IncidentDetailScreen,
    IncidentsScreen,
)
from polysec_tui.screens.protection import LockdownScreen
from polysec_tui.screens.timeline import TimelineScreen
from polysec_tui.services.clients import incidents, protection
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest, withdrawal
from tests.support.officers import MovableClock
from tests.support.tui import idle, sync

PASSWORD = "a-long-Officer-passphrase"


class Console:
    def __init__(self, settings: Settings) -> None:
        self.clock = MovableClock(FIXED_NOW)
        engine = make_engine(settings.db_url)
        migrate.upgrade(engine)
        self.rt = Runtime(settings, engine, load_keyring(settings.keyring_path),
                          clock=self.clock)
        enrolment = officers.bootstrap_admin(self.rt, "chief", PASSWORD)
        self.secret = enrolment.secret
        self.session: tuple[str, Actor] = sessions.login(
            self.rt, "chief", PASSWORD, pyotp.TOTP(self.secret).at(self.clock()))
        ingest(self.rt, "accounts", account("A1"), account("A2"))
        ingest(self.rt, "withdrawals", withdrawal("W1"), withdrawal("W2"),
               withdrawal("[b]W3[/b]", acct="A1"))
        with self.rt.transaction() as s:
            a1 = s.scalar(select(Account.id).where(Account.external_id == "A1"))
            s.add(ClientSession(external_id="S1", account_id=a1, created_at=FIXED_NOW))
            s.execute(update(Withdrawal).where(Withdrawal.external_id == "W2")
                      .values(status="held"))

    def code(self) -> str:
        self.clock.advance(seconds=30)
        return pyotp.TOTP(self.secret).at(self.clock())


def auth_log(rt: Runtime) -> list[tuple[object, ...]]:
    from polysec_tui.db.models import AuditLogEntry

    with rt.sessions() as s:
        return [tuple(r) for r in s.execute(
            select(AuditLogEntry.at, AuditLogEntry.action, AuditLogEntry.details)
            .where(AuditLogEntry.action.like("auth.%")).order_by(AuditLogEntry.seq))]


@pytest.fixture
def console(settings: Settings) -> Iterator[Console]:
    made = Console(settings)
    yield made
    made.rt.engine.dispose()


def rows(screen: Any, selector: str) -> list[list[str]]:
    table: DataTable[Text] = screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@sync
async def test_lockdown_confirmation_lists_the_plan_and_needs_a_code(console) -> None:
    app = PolysecApp(console.rt, session=console.session)
    async with app.run_test(size=(110, 36)) as pilot:
        await idle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        await app.push_screen(LockdownScreen(console.rt, console.session[1], "A1"))
        await idle(pilot)
        modal = app.screen
        plan = str(modal.query_one("#protect-plan", Static).render())
        assert "revoke 1 client sessions and 0 API keys" in plan
        assert "reject 3 open withdrawals: W1, W2, [b]W3[/b]" in plan  # markup stays text
        modal.query_one("#protect-reason", Input).value = "confirmed takeover"
        modal.query_one("#protect-code", Input).value = "000000"
        await pilot.click("#protect-confirm")
        await idle(pilot)
        assert app.screen is modal  # a wrong code: refused, the modal stays
        assert "authentication failed" in str(modal.query_one("#protect-error",
                                                                Static).render())
        assert modal.query_one("#protect-code", Input).value == ""  # never kept
        code_input = modal.query_one("#protect-code", Input)
        code_input.value = console.code()
        code_input.focus()
        await pilot.press("enter")  # Enter in the code field confirms, as the button does
        await idle(pilot)
        assert isinstance(app.screen, DashboardScreen), (
            str(modal.query_one("#protect-error", Static).render()), auth_log(console.rt))
    with console.rt.sessions() as s:
        a1 = s.scalar(select(Account).where(Account.external_id == "A1"))
        assert a1 is not None and a1.status == "locked"


@sync
async def test_incident_list_detail_note_contain_close(console) -> None:
    chief = console.session[1]
    protection.lockdown(console.rt, chief, "A1", "takeover", console.code())
    app = PolysecApp(console.rt, session=console.session)
    async with app.run_test(size=(120, 36)) as pilot:
        await idle(pilot)
        await pilot.press(DESTINATIONS["incidents"].key)
        await idle(pilot)
        screen = app.screen
        assert isinstance(screen, IncidentsScreen)
        listed = rows(screen, "#incidents-table")
        assert len(listed) == 1 and listed[0][3] == "open" and listed[0][5] == "A1"
        await pilot.press("enter")
        await idle(pilot)
        detail = app.screen
        assert isinstance(detail, IncidentDetailScreen)
        kinds = [r[1] for r in rows(detail, "#incident-timeline")]
        assert {"note", "withdrawal", "audit_entry"} <= set(kinds)
        await pilot.press("n")
        await pilot.press(*"client called")
        await pilot.press("enter")
        await idle(pilot)
        assert any(r[4] == "client called" for r in rows(detail, "#incident-timeline"))
        await pilot.press("c")
        await idle(pilot)
        assert "contained" in str(detail.query_one("#incident-head", Static).render())
        await pilot.press("x")
        await idle(pilot)
        assert isinstance(app.screen, CloseIncidentScreen)
        app.screen.query_one("#close-outcome", Select).value = "confirmed_takeover"
        await pilot.click("#close-confirm")
        await idle(pilot)
        assert "closed (confirmed_takeover)" in str(
            detail.query_one("#incident-head", Static).render())
        await pilot.press("escape")
        await idle(pilot)
        assert rows(app.screen, "#incidents-table") == []  # only active ones by default
    assert incidents.open_count(console.rt) == 0


@sync
async def test_the_demos_takeover_is_locked_down_from_the_withdrawal_detail(
        tmp_path: Path) -> None:
    """The demo's injected account takeover: open its held withdrawal, press L, confirm
    with a reason and a fresh code; the account ends locked with nothing open."""
    from polysec_tui.crypto.keyring import Keyring, write_new_keyring
    from polysec_tui.db.models import DemoScenario, Officer
    from polysec_tui.screens.withdrawals import WithdrawalDetailScreen
    from polysec_tui.synthetic.demo import build_demo
    from polysec_tui.synthetic.generator import DemoSpec

    anchor = FIXED_NOW
    settings = Settings(f"sqlite:///{tmp_path / 'demo.db'}", tmp_path / "keyring.json",
                        demo=True)
    write_new_keyring(settings.keyring_path, Keyring.generate())
    build_demo(settings, DemoSpec(accounts=300, days=10, seed=7, anchor=anchor))
    clock = MovableClock(anchor)
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    with rt.sessions() as s:
        victim = s.scalar(select(DemoScenario.account_external_id)
                          .where(DemoScenario.kind == "account_takeover"))
        held = s.scalar(select(Withdrawal.external_id)
                        .join(Account, Account.id == Withdrawal.account_id)
                        .where(Account.external_id == victim, Withdrawal.status == "held"))
        sam = s.scalar(select(Officer).where(Officer.name == "sam"))
        assert victim and held and sam is not None
        secret = sessions.officer_secret(rt, sam)
    assert secret is not None
    session = sessions.login(rt, "sam", "demo-senior-passphrase",
                             pyotp.TOTP(secret).at(clock()))
    app = PolysecApp(rt, session=session)
    async with app.run_test(size=(120, 40)) as pilot:
        await idle(pilot)
        await app.push_screen(WithdrawalDetailScreen(held))
        await idle(pilot)
        await pilot.press("L")
        await idle(pilot)
        modal = app.screen
        assert isinstance(modal, LockdownScreen)
        assert held in str(modal.query_one("#protect-plan", Static).render())
        modal.query_one("#protect-reason", Input).value = "demo takeover confirmed"
        clock.advance(seconds=30)
        modal.query_one("#protect-code", Input).value = pyotp.TOTP(secret).at(clock())
        await pilot.click("#protect-confirm")
        await idle(pilot)
        assert isinstance(app.screen, WithdrawalDetailScreen)
    with rt.sessions() as s:
        account = s.scalar(select(Account).where(Account.external_id == victim))
        assert account is not None and account.status == "locked"
        left = s.scalars(select(Withdrawal.status).where(
            Withdrawal.account_id == account.id)).all()
        assert not set(left) & set(protection.OPEN_WITHDRAWAL_STATES)
    assert incidents.list_incidents(rt, session[1])[0].accounts == [victim]
    rt.engine.dispose()


@sync
async def test_freeze_from_the_timeline(console) -> None:
    from polysec_tui.screens.protection import FreezeScreen, UnfreezeScreen
    from polysec_tui.services import four_eyes

    with console.rt.sessions() as s:
        a1 = s.scalar(select(Account.id).where(Account.external_id == "A1"))
    app = PolysecApp(console.rt, session=console.session)
    async with app.run_test(size=(120, 40)) as pilot:
        await idle(pilot)
        await app.push_screen(TimelineScreen(a1))
        await idle(pilot)
        await pilot.press("F")
        await idle(pilot)
        assert isinstance(app.screen, FreezeScreen)
        await pilot.press(*"odd logins")
        await pilot.press("enter")
        await idle(pilot)
        assert isinstance(app.screen, TimelineScreen)
        # The client called back: ask for the freeze to be lifted (four-eyes).
        await pilot.press("U")
        await idle(pilot)
        assert isinstance(app.screen, UnfreezeScreen)
        await pilot.press(*"client verified by phone", "enter")
        await idle(pilot)
        assert isinstance(app.screen, TimelineScreen)
    with console.rt.sessions() as s:
        assert s.scalar(select(Account.status).where(Account.id == a1)) == "frozen"
    (request,) = four_eyes.list_requests(console.rt, console.session[1])
    assert (request.kind, request.requester, request.reason) == (
        "account.unfreeze", "chief", "client verified by phone")


@sync
async def test_marked_withdrawals_are_attached_to_a_new_incident_then_one_more(
        console) -> None:
    """shift+down marks rows; I names how many and which, opens a new incident with
    them; the detail's i offers the newest active incident first."""
    with console.rt.transaction() as s:
        s.execute(update(Withdrawal).values(status="held"))
    app = PolysecApp(console.rt, session=console.session)
    async with app.run_test(size=(120, 36)) as pilot:
        await idle(pilot)
        await pilot.press(DESTINATIONS["withdrawals"].key)
        await idle(pilot)
        queue = app.screen
        shown = [r[6] for r in rows(queue, "#queue-table")]
        await pilot.press("shift+down", "shift+down")
        assert [r[0] for r in rows(queue, "#queue-table")][:2] == ["✓", "✓"]
        await pilot.press("I")
        await idle(pilot)
        modal = app.screen
        assert isinstance(modal, AttachScreen)
        summary = " ".join(str(w.render()) for w in modal.query(Static))
        assert f"Attach 2 withdrawal(s): {shown[0]}, {shown[1]}" in summary
        assert modal.query_one("#attach-incident", Select).value == "new"
        assert modal.focused is modal.query_one("#attach-title", Input)  # nothing to pick
        await pilot.press(*"mule ring")
        await pilot.press("enter")
        await idle(pilot)
        assert app.screen is queue
        assert [r[0] for r in rows(queue, "#queue-table")][:2] == [" ", " "]  # unmarked
        (made,) = incidents.list_incidents(console.rt, console.session[1])
        assert made.title == "mule ring"
        await pilot.press("down", "down", "enter")
        await idle(pilot)
        await pilot.press("i")
        await idle(pilot)
        assert isinstance(app.screen, AttachScreen)
        assert app.screen.query_one("#attach-incident", Select).value == str(made.id)
        await pilot.click("#attach-confirm")
        await idle(pilot)
    detail = incidents.show(console.rt, console.session[1], made.id)
    assert sorted(ref for kind, ref in detail.links if kind == "withdrawal") == sorted(
        shown[:3])


@sync
async def test_the_account_screen_shows_holds_and_protects(console) -> None:
    """The same protective keys wherever an account is shown: the account screen lists
    the holds in force, and F, L and U act on the account looked up."""
    from polysec_tui.screens.account import AccountScreen
    from polysec_tui.screens.protection import FreezeScreen, UnfreezeScreen

    app = PolysecApp(console.rt, session=console.session)
    async with app.run_test(size=(120, 40)) as pilot:
        await idle(pilot)
        await pilot.press(DESTINATIONS["account"].key)
        await idle(pilot)
        await pilot.press(*"A1", "enter")
        await idle(pilot)
        screen = app.screen
        assert isinstance(screen, AccountScreen)
        assert ["Holds", "none"] in rows(screen, "#account-details")
        await pilot.press("F")
        await idle(pilot)
        assert isinstance(app.screen, FreezeScreen)
        await pilot.press(*"odd logins", "enter")
        await idle(pilot)
        back: object = app.screen
        assert back is screen
        holds = [r[1] for r in rows(screen, "#account-details") if r[0] == "Hold"]
        assert len(holds) == 1 and holds[0].startswith("freeze #") and "odd logins" in holds[0]
        await pilot.press("U")
        await idle(pilot)
        assert isinstance(app.screen, UnfreezeScreen)
