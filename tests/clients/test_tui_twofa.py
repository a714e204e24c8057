"""The 2FA reset screens, driven by Pilot: the reset flow pushed for one account, a reset
request decided in the approvals inbox, and the step-up code field that never shows its
digits (nor in a snapshot)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, DataTable, Input, Static

from polysec_tui.app import DESTINATIONS, PolysecApp, screen_class
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.screens.approvals import ApprovalsScreen
from polysec_tui.screens.twofa import PendingRequests, TwoFactorResetScreen
from polysec_tui.services.clients import twofa
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.officers import MovableClock, Staff, make_staff
from tests.support.tui import quiet
from tests.support.twofa import PROOF, make_client


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def wait_for(pilot: Pilot[Any], ready: Callable[[], bool], what: str) -> None:
    for _ in range(300):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if ready() and not any(w.is_running for w in pilot.app.workers):
            return
    shown = [str(s.render()) for s in pilot.app.screen.query(Static)][-3:]
    raise AssertionError(f"timed out waiting for {what}; last texts {shown}")


async def still(pilot: Pilot[Any]) -> None:
    await wait_for(pilot, lambda: True, "the screen")
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


def static_text(pilot: Pilot[Any], selector: str) -> str:
    return str(pilot.app.screen.query_one(selector, Static).render())


def rows(pilot: Pilot[Any], selector: str) -> list[list[str]]:
    table: DataTable[Text] = pilot.app.screen.query_one(selector, DataTable)
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def fill(pilot: Pilot[Any], selector: str, value: str) -> None:
    pilot.app.screen.query_one(selector, Input).value = value
    await pilot.pause()


async def type_code(pilot: Pilot[Any], code: str, field: str = "#pending-code") -> None:
    """Type into the code field key by key, as an officer would."""
    pilot.app.screen.query_one(field, Input).focus()
    await pilot.pause()
    await pilot.press(*code)


async def click(pilot: Pilot[Any], selector: str) -> None:
    pilot.app.screen.query_one(selector, Button).press()
    await pilot.pause()


def app_as(staff: Staff, name: str) -> PolysecApp:
    return PolysecApp(staff.rt, session=staff.login(name))


def a1_id(staff: Staff) -> uuid.UUID:
    return twofa.status(staff.rt, staff.actors["ann"], "A1").account_id


def screen_svg(pilot: Pilot[Any]) -> str:
    return pilot.app.export_screenshot()


# ------------------------------------------------------------------------------- flow


@sync
async def test_open_a_request_from_the_reset_screen(staff: Staff) -> None:
    app = app_as(staff, "ann")
    async with app.run_test(size=(140, 60)) as pilot:
        await app.push_screen(TwoFactorResetScreen(a1_id(staff)))
        await wait_for(pilot, lambda: "Account" in static_text(pilot, "#twofa-status"),
                       "status")
        status = static_text(pilot, "#twofa-status")
        assert "A1" in status and "yes, since 2025-03-01 10:00 UTC" in status
        assert "Request   none" in status
        risk = rows(pilot, "#twofa-risk")
        assert [r[1] for r in risk] == ["anomaly new_country (high)", "withdrawal pending",
                                        "security password_change"]
        assert "1 login anomalies, 1 open withdrawals" in str(
            app.screen.query_one("#twofa-risk", DataTable).border_subtitle)

        # One proof is not enough (default min_proofs = 2): the service says why.
        await fill(pilot, "#proof-liveness", "LIVE-77")
        await fill(pilot, "#twofa-reason", "client lost their phone")
        await fill(pilot, "#twofa-evidence", "video call, case C-1")
        await click(pilot, "#twofa-open")
        await wait_for(pilot, lambda: "needs at least 2" in static_text(pilot,
                                                                         "#twofa-message"),
                       "the refusal")
        assert app.screen.query_one("#twofa-message").has_class("-error")
        assert twofa.list_requests(staff.rt, staff.actors["ann"]) == []

        app.screen.query_one("#proof-history", Checkbox).value = True
        await click(pilot, "#twofa-open")
        await wait_for(pilot, lambda: "opened" in static_text(pilot, "#twofa-message"),
                       "the request")
        (request,) = twofa.list_requests(staff.rt, staff.actors["ann"])
        assert request.requester == "ann" and request.status == "pending"
        assert request.proofs == {"liveness": "LIVE-77", "history_questions": "passed"}
        await wait_for(pilot, lambda: f"pending {request.id}" in static_text(
            pilot, "#twofa-status"), "the new status")
        assert app.screen.query_one("#twofa-reason", Input).value == ""
        # The officer's own request is not in their list of requests to decide.
        assert rows(pilot, "#pending-table") == []
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TwoFactorResetScreen)


@sync
async def test_approve_in_the_approvals_inbox(staff: Staff) -> None:
    opened = twofa.request_reset(staff.rt, staff.actors["ann"], "A1", "lost phone",
                                 "video call", PROOF)
    app = app_as(staff, "sue")
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.actor is not None, "login")
        await pilot.press(DESTINATIONS["approvals"].key)
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalsScreen)
                       and len(rows(pilot, "#approvals-table")) == 1, "the inbox")
        (row,) = rows(pilot, "#approvals-table")
        assert row[:4] == [str(opened.request.id)[:8], "twofa.reset",
                           "reset the 2FA of account A1", "ann"]
        evidence = static_text(pilot, "#approvals-evidence")
        assert "identity proofs" in evidence and "video call" in evidence

        # Enter on the request shows its account: status and live risk context.
        app.screen.query_one("#approvals-table", DataTable).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TwoFactorResetScreen)
                       and "Account   A1" in static_text(pilot, "#twofa-status"), "account")
        assert len(rows(pilot, "#twofa-risk")) == 3
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalsScreen), "back")

        # A wrong code: one-line refusal, field cleared, nothing executed.
        await type_code(pilot, "000000", "#approvals-code")
        assert "000000" not in screen_svg(pilot)
        await click(pilot, "#approvals-approve")
        await wait_for(pilot, lambda: app.screen.query_one("#approvals-status")
                       .has_class("-error"), "the refusal")
        assert "authentication failed" in static_text(pilot, "#approvals-status")
        assert app.screen.query_one("#approvals-code", Input).value == ""
        assert twofa.status(staff.rt, staff.actors["sue"], "A1").enrolled

        # Deny needs a reason, checked before any code is spent.
        await click(pilot, "#approvals-deny")
        assert "a reason is required" in static_text(pilot, "#approvals-status")

        code = staff.next_code("sue")
        await type_code(pilot, code, "#approvals-code")
        assert app.screen.query_one("#approvals-code", Input).value == code
        assert code not in screen_svg(pilot)
        await click(pilot, "#approvals-approve")
        await wait_for(pilot, lambda: "approved" in static_text(pilot, "#approvals-status"),
                       "the approval")
        assert "sessions revoked 2" in static_text(pilot, "#approvals-status")
        assert app.screen.query_one("#approvals-code", Input).value == ""
        await wait_for(pilot, lambda: rows(pilot, "#approvals-table") == [], "the reload")
    after = twofa.status(staff.rt, staff.actors["sue"], "A1")
    assert not after.enrolled and after.reenrolment_required and after.hold_until


@sync
async def test_analyst_sees_the_refusal(staff: Staff) -> None:
    twofa.request_reset(staff.rt, staff.actors["sam"], "A1", "lost phone", "video call",
                        PROOF)
    app = app_as(staff, "ann")
    async with app.run_test(size=(140, 60)) as pilot:
        await app.push_screen(TwoFactorResetScreen(a1_id(staff)))
        await wait_for(pilot, lambda: len(rows(pilot, "#pending-table")) == 1, "the list")
        await type_code(pilot, staff.next_code("ann"))
        await click(pilot, "#pending-approve")
        await wait_for(pilot, lambda: "may not approve" in static_text(pilot,
                                                                        "#pending-status"),
                       "the refusal")
        assert app.screen.query_one("#pending-code", Input).value == ""
    assert twofa.status(staff.rt, staff.actors["ann"], "A1").enrolled


@sync
async def test_deny_from_the_reset_screen(staff: Staff) -> None:
    opened = twofa.request_reset(staff.rt, staff.actors["ann"], "A1", "lost phone",
                                 "video call", PROOF)
    app = app_as(staff, "sam")
    async with app.run_test(size=(140, 60)) as pilot:
        await app.push_screen(TwoFactorResetScreen(a1_id(staff)))
        await wait_for(pilot, lambda: len(rows(pilot, "#pending-table")) == 1, "the list")
        await fill(pilot, "#pending-note", "caller failed the callback")
        await type_code(pilot, staff.next_code("sam"))
        await click(pilot, "#pending-deny")
        await wait_for(pilot, lambda: "denied" in static_text(pilot, "#pending-status"),
                       "the denial")
        await wait_for(pilot, lambda: "Request   none" in static_text(pilot,
                                                                        "#twofa-status"),
                       "the account reload")
    view = twofa.get_request(staff.rt, staff.actors["sam"], opened.request.id)
    assert (view.status, view.decided_by) == ("denied", "sam")
    assert twofa.status(staff.rt, staff.actors["sam"], "A1").enrolled


def test_the_inbox_is_a_destination() -> None:
    dest = DESTINATIONS["approvals"]
    assert screen_class(dest.screen) is ApprovalsScreen and dest.key.isdigit()
    assert len({d.key for d in DESTINATIONS.values()}) == len(DESTINATIONS)
    assert PendingRequests.DEFAULT_CSS


# --------------------------------------------------------------------------- snapshot


class SnapshotRuntime(Runtime):
    @property
    def database_label(self) -> str:
        return "sqlite:///srv/polysec/polysec.db"


@pytest.fixture
def snapshot_staff(tmp_path: Path, keyring_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Staff]:
    counter = itertools.count(1)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=next(counter)))
    url = f"sqlite:///{tmp_path / 'snapshot.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    clock = MovableClock(FIXED_NOW)
    rt = SnapshotRuntime(Settings(url, keyring_path), engine, load_keyring(keyring_path),
                         clock=clock)
    staff = make_staff(rt, clock)
    make_client(rt)
    twofa.request_reset(rt, staff.actors["ann"], "A1", "client lost their phone",
                        "video call, case C-1", PROOF)
    yield staff
    engine.dispose()


SECRET_CODE = "918273"


def test_snapshot_reset_screen_with_a_typed_code(snap_compare: Any,
                                                 snapshot_staff: Staff) -> None:
    app = app_as(snapshot_staff, "sue")
    account_id = a1_id(snapshot_staff)

    async def before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.actor is not None, "login")
        await app.push_screen(TwoFactorResetScreen(account_id))
        await wait_for(pilot, lambda: len(rows(pilot, "#pending-table")) == 1, "the list")
        await type_code(pilot, SECRET_CODE)
        await still(pilot)
        await quiet(pilot)
        assert SECRET_CODE not in screen_svg(pilot)

    assert snap_compare(app, terminal_size=(130, 52), run_before=before)
