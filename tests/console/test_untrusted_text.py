"""Untrusted platform text on every screen that shows it: Rich markup (an action link, a
hyperlink), ANSI escape sequences and control characters come out as literal, inert
text, and the console keeps running."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from sqlalchemy import select, update
from textual.pilot import Pilot

from polysec_tui.app import DESTINATIONS, PolysecApp
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import Account, Withdrawal, WithdrawalScreening
from polysec_tui.screens.incidents import IncidentDetailScreen
from polysec_tui.screens.timeline import TimelineScreen
from polysec_tui.services.clients import incidents
from polysec_tui.services.logins import anomalies
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest, login, withdrawal
from tests.support.officers import MovableClock
from tests.support.tui import idle, sync

CLICK = "[@click=app.quit]x[/]"
LINK = "[link=https://evil.example/]y[/link]"
HOSTILE = f"{CLICK} {LINK} \x1b[31mred\x1b[0m b\x07e\x08l"
PASSWORD = "a-long-Officer-passphrase"


def visible_text(app: PolysecApp) -> str:
    """What the terminal shows, from the SVG export: tags dropped, entities decoded."""
    svg = app.export_screenshot()
    body = re.sub(r"<style.*?</style>", "", svg, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", "", body)).replace("\xa0", " ")
    return text


def assert_inert(app: PolysecApp, where: str) -> None:
    shown = visible_text(app)
    assert CLICK in shown, f"{where}: the markup is not shown literally"
    assert "[link=https://evil.example/]y[/link]" in shown, f"{where}: link markup"
    assert "\x1b" not in shown and "\x07" not in shown and "\x08" not in shown, where
    assert app.is_running, where


@pytest.fixture
def console(settings: Settings) -> Iterator[tuple[Runtime, tuple[str, Actor], int]]:
    clock = MovableClock(FIXED_NOW)
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine)
    rt = Runtime(settings, engine, load_keyring(settings.keyring_path), clock=clock)
    secret = officers.bootstrap_admin(rt, "chief", PASSWORD).secret
    session = sessions.login(rt, "chief", PASSWORD, pyotp.TOTP(secret).at(clock()))
    ingest(rt, "accounts", account("A1"))
    ingest(rt, "logins", *[login(f"L{i}", at=f"2026-11-1{i}T10:00:00Z", user_agent=HOSTILE,
                                 city=HOSTILE) for i in range(5)],
           login("L9", at="2026-11-20T09:00:00Z", success=False, user_agent=HOSTILE,
                 city=HOSTILE, country="NG", asn=37148, ip="102.89.1.1", lat=6.45,
                 lon=3.39, device_id="other"))
    ingest(rt, "withdrawals", withdrawal("W1", address_label=HOSTILE))
    with rt.transaction() as s:
        s.execute(update(Withdrawal).values(status="held"))
        s.add(WithdrawalScreening(withdrawal_id=s.scalar(select(Withdrawal.id)),
                                  screened_at=FIXED_NOW, risk_score=70.0))
    anomalies.analyze(rt, session[1], full=True)
    number = incidents.open_incident(rt, session[1], title=HOSTILE, severity="high",
                                     accounts=["A1"], note=HOSTILE)
    yield rt, session, number
    engine.dispose()


@sync
async def test_hostile_text_is_inert_on_every_screen_that_shows_it(console) -> None:
    rt, session, incident = console
    app = PolysecApp(rt, session=session)
    async with app.run_test(size=(200, 50)) as pilot:
        await idle(pilot)
        assert_inert(app, "dashboard")
        await pilot.press(DESTINATIONS["withdrawals"].key)
        await idle(pilot)
        await pilot.press("enter")  # the held withdrawal's detail
        await idle(pilot)
        assert_inert(app, "withdrawal detail")
        with rt.sessions() as s:
            account_id = s.scalar(select(Account.id).where(Account.external_id == "A1"))
        await app.push_screen(TimelineScreen(account_id))
        await idle(pilot)
        assert_inert(app, "timeline")
        await open_and_check(pilot, app, IncidentDetailScreen(incident),
                             "incident")


async def open_and_check(pilot: Pilot[Any], app: PolysecApp, screen: Any, where: str) -> None:
    await app.push_screen(screen)
    await idle(pilot)
    assert_inert(app, where)
