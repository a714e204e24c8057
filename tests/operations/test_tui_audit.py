"""The audit checks screen, driven by Pilot: run with progress, findings most severe
first with evidence and remediation, the history of runs, the analyst's refusal, and a
snapshot at 80x24."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, SelectionList, Static

from polysec_tui.app import DESTINATIONS, PolysecApp
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.screens.audit import AuditChecksScreen
from polysec_tui.screens.dashboard import DashboardScreen
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.operations import audit_checks
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest
from tests.support.officers import MovableClock
from tests.support.tui import SnapshotRuntime, idle, quiet, sync

PASSWORD = "a-long-Officer-passphrase"
KEY = DESTINATIONS["audit"].key


def make_console(settings: Settings, runtime_class: type[Runtime] = Runtime
                 ) -> tuple[Runtime, tuple[str, Actor], MovableClock, str]:
    clock = MovableClock(FIXED_NOW)
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine)
    rt = runtime_class(settings, engine, load_keyring(settings.keyring_path), clock=clock)
    enrolment = officers.bootstrap_admin(rt, "chief", PASSWORD)
    session = sessions.login(rt, "chief", PASSWORD, pyotp.TOTP(enrolment.secret).at(clock()))
    ingest(rt, "accounts", account("A1"), account("A2"))
    return rt, session, clock, enrolment.secret


@pytest.fixture
def console(settings: Settings) -> Iterator[tuple[Runtime, tuple[str, Actor]]]:
    rt, session, _clock, _secret = make_console(settings)
    yield rt, session
    rt.engine.dispose()


async def open_audit(pilot: Pilot[Any]) -> AuditChecksScreen:
    await idle(pilot)
    assert isinstance(pilot.app.screen, DashboardScreen)
    await pilot.press(KEY)
    await idle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, AuditChecksScreen)
    return screen


def cells(screen: AuditChecksScreen, selector: str) -> list[list[str]]:
    table: DataTable[Text] = screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(screen: AuditChecksScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


@sync
async def test_run_all_shows_failures_first_with_evidence_and_history(console) -> None:
    rt, session = console
    app = PolysecApp(rt, session=session)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_audit(pilot)
        assert cells(screen, "#audit-history") == []
        await pilot.press("r")
        await idle(pilot)
        rows = cells(screen, "#audit-findings")
        statuses = [r[0] for r in rows]
        assert statuses == sorted(statuses, key=["FAIL", "WARN", "PASS"].index)
        assert ["FAIL", "backup_freshness"] in [r[:2] for r in rows]  # never backed up
        assert {r[1] for r in rows} == set(audit_checks.applicable(rt))
        assert "FAIL" in text_of(screen, "#audit-run-status")
        detail = text_of(screen, "#audit-detail")
        assert "fix:" in detail and "evidence:" in detail  # of the first (highlighted) row
        history = cells(screen, "#audit-history")
        assert len(history) == 1 and history[0][2] == "fail"


@sync
async def test_run_only_the_selected_check_then_reopen_an_older_run(console) -> None:
    rt, session = console
    app = PolysecApp(rt, session=session)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_audit(pilot)
        await pilot.press("r")
        await idle(pilot)
        checks: SelectionList[str] = screen.query_one("#audit-checks", SelectionList)
        await pilot.press("a")  # none
        assert checks.selected == []
        checks.select("auditlog_chain")
        await pilot.press("r")
        await idle(pilot)
        assert cells(screen, "#audit-findings") == [
            ["PASS", "auditlog_chain", cells(screen, "#audit-findings")[0][2]]]
        await pilot.press("h")  # history has focus; the older run is the second row
        await pilot.press("down", "enter")
        await idle(pilot)
        assert len(cells(screen, "#audit-findings")) == len(audit_checks.applicable(rt))


@sync
async def test_an_analyst_sees_the_refusal(settings: Settings) -> None:
    rt, _session, clock, _secret = make_console(settings)
    made = officers.seed_officers(rt, [("ann", "analyst", PASSWORD)], clock())["ann"]
    clock.advance(seconds=30)
    session = sessions.login(rt, "ann", PASSWORD, pyotp.TOTP(made.secret).at(clock()))
    app = PolysecApp(rt, session=session)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_audit(pilot)
        assert "may not audit.run" in text_of(screen, "#audit-run-status")
        await pilot.press("r")
        await idle(pilot)
        assert "may not audit.run" in text_of(screen, "#audit-run-status")
        assert cells(screen, "#audit-findings") == []
    rt.engine.dispose()


@pytest.fixture
def snapshot_console(tmp_path: Path, keyring_path: Path) -> Iterator[PolysecApp]:
    url = f"sqlite:///{tmp_path / 'snapshot.db'}"
    rt, session, _clock, _secret = make_console(Settings(url, keyring_path), SnapshotRuntime)
    yield PolysecApp(rt, session=session)
    rt.engine.dispose()


def test_snapshot_audit_screen(snap_compare: Any, snapshot_console: PolysecApp) -> None:
    async def run_all(pilot: Pilot[Any]) -> None:
        await open_audit(pilot)
        await pilot.press("r")
        await idle(pilot)
        await quiet(pilot)  # the failed run's alert toast is the dashboard's, not this screen's

    assert snap_compare(snapshot_console, terminal_size=(80, 24), run_before=run_all)
