"""The officer's loop in the console, driven by Pilot: a withdrawal above the limit is
asked for by one officer and approved by a senior in the approvals inbox (with its
evidence, the withdrawal one key away), the requester's console is told; the queue's
"next" key claims and opens the most urgent item; the claimant releases it. And a
snapshot of the inbox with requests of several kinds."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Static

from polysec_tui.app import DESTINATIONS, PolysecApp
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.screens.approvals import ApprovalsScreen
from polysec_tui.screens.withdrawals import WithdrawalDetailScreen, WithdrawalQueueScreen
from polysec_tui.services.clients import protection, twofa
from polysec_tui.services.withdrawals import review as wds
from tests.support import FIXED_NOW
from tests.support.officers import MovableClock, Staff, make_staff
from tests.support.screening import build_history, held, status
from tests.support.tui import SnapshotRuntime, quiet, sync
from tests.support.twofa import PROOF, make_client


async def until(pilot: Pilot[Any], ready: Callable[[], bool], what: str) -> None:
    for _ in range(300):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if ready():
            return
    raise AssertionError(f"timed out waiting for {what}")


def rows(app: PolysecApp, selector: str = "#approvals-table") -> list[list[str]]:
    table: DataTable[Text] = app.screen.query_one(selector, DataTable)
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: PolysecApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def toasts(app: PolysecApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


@sync
async def test_a_senior_approves_in_the_inbox_and_the_requester_is_told(staff: Staff) -> None:
    rt = staff.rt
    held(rt, "T1", 1, amount="1.5")  # above the 1 BTC approval limit
    wds.claim(rt, staff.actors["ann"], "T1")
    opened = wds.approve(rt, staff.actors["ann"], "T1", "client confirmed by phone")
    assert opened.approval_id is not None
    short = str(opened.approval_id)[:8]

    sue = PolysecApp(rt, session=staff.login("sue"))
    async with sue.run_test(size=(150, 44)) as pilot:
        await pilot.press(DESTINATIONS["approvals"].key)
        await until(pilot, lambda: isinstance(sue.screen, ApprovalsScreen)
                    and len(rows(sue)) == 1, "the inbox")
        assert rows(sue)[0][:4] == [short, "withdrawal.approve", "approve withdrawal T1",
                                    "ann"]
        evidence = text_of(sue, "#approvals-evidence")
        assert "1.5 BTC to bc1qnew1" in evidence and "claimed by ann" in evidence
        assert "client confirmed by phone" in evidence and "rules: ip_not_seen" in evidence
        # The withdrawal is one key away, and back.
        sue.screen.query_one("#approvals-table", DataTable).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(sue.screen, WithdrawalDetailScreen)
                    and sue.screen.detail is not None, "the withdrawal")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(sue.screen, ApprovalsScreen), "back")
        code = staff.next_code("sue")
        sue.screen.query_one("#approvals-code", Input).value = code
        sue.screen.query_one("#approvals-approve", Button).press()
        await until(pilot, lambda: "approved and executed" in text_of(sue, "#approvals-status"),
                    "the approval")
        assert "status approved" in text_of(sue, "#approvals-status")
        assert code not in sue.export_screenshot()
        await until(pilot, lambda: rows(sue) == [], "the reload")
    assert status(rt, "T1") == "approved"

    ann = PolysecApp(rt, session=staff.login("ann"))
    async with ann.run_test(size=(150, 44)) as pilot:
        ann.check_notifications()  # the 3-second timer's work, now
        await until(pilot, lambda: any("sue approved your request" in t
                                       for t in toasts(ann)), "the notification")
        ann.check_notifications()
        await until(pilot, lambda: True, "a second look")
        assert sum("sue approved" in t for t in toasts(ann)) == 1  # shown once


@sync
async def test_a_request_decided_elsewhere_does_not_hand_over_its_code(staff: Staff) -> None:
    """The highlighted request decided in another console: the inbox's reload puts the
    cursor on another request, and the code typed for the first is refused once, with
    why, instead of approving a request the officer never read."""
    rt = staff.rt
    held(rt, "T1", 1, amount="1.5")
    held(rt, "T2", 2, amount="2.5")
    opened = [wds.approve(rt, staff.actors["ann"], ext, f"{ext} big") for ext in ("T1", "T2")]
    sue = PolysecApp(rt, session=staff.login("sue"))
    async with sue.run_test(size=(150, 44)) as pilot:
        await pilot.press(DESTINATIONS["approvals"].key)
        await until(pilot, lambda: isinstance(sue.screen, ApprovalsScreen)
                    and len(rows(sue)) == 2, "the inbox")
        first = sue.screen.query_one("#approvals-table", DataTable)
        chosen = rows(sue)[first.cursor_row][2]  # the withdrawal sue reads
        request = next(o.approval_id for o, ext in zip(opened, ("T1", "T2"), strict=True)
                       if ext in chosen)
        assert request is not None
        wds_four_eyes_approve(staff, "sam", request)  # meanwhile, in sam's console
        inbox = sue.screen
        assert isinstance(inbox, ApprovalsScreen)
        inbox.action_reload()  # the inbox's own 5-second refresh
        await until(pilot, lambda: len(rows(sue)) == 1, "the reload")
        assert "no longer pending" in text_of(sue, "#approvals-status")
        other = "T2" if "T1" in chosen else "T1"
        sue.screen.query_one("#approvals-code", Input).value = staff.next_code("sue")
        sue.screen.query_one("#approvals-approve", Button).press()
        await until(pilot, lambda: "read its evidence" in text_of(sue, "#approvals-status"),
                    "the refusal")
        assert status(rt, other) == "in_review"  # not approved behind sue's back
        assert sue.screen.query_one("#approvals-code", Input).value == ""
        # Now deliberately: the request shown is decided.
        sue.screen.query_one("#approvals-code", Input).value = staff.next_code("sue")
        sue.screen.query_one("#approvals-approve", Button).press()
        await until(pilot, lambda: "approved and executed" in text_of(sue, "#approvals-status"),
                    "the approval")
        await until(pilot, lambda: rows(sue) == [], "the reload")
        assert "no longer pending" not in text_of(sue, "#approvals-status")
    assert status(rt, other) == "approved"


def wds_four_eyes_approve(staff: Staff, name: str, request: uuid.UUID) -> None:
    from polysec_tui.services import four_eyes

    four_eyes.approve(staff.rt, staff.actors[name], request, staff.next_code(name))


@sync
async def test_own_requests_are_listed_but_refused_before_a_code(staff: Staff) -> None:
    rt = staff.rt
    held(rt, "T1", 1, amount="1.5")
    wds.claim(rt, staff.actors["ann"], "T1")
    wds.approve(rt, staff.actors["ann"], "T1", "big but expected")
    ann = PolysecApp(rt, session=staff.login("ann"))
    async with ann.run_test(size=(150, 44)) as pilot:
        await pilot.press(DESTINATIONS["approvals"].key)
        await until(pilot, lambda: isinstance(ann.screen, ApprovalsScreen)
                    and len(rows(ann)) == 1, "the inbox")
        assert rows(ann)[0][3] == "yours"
        ann.screen.query_one("#approvals-approve", Button).press()
        await until(pilot, lambda: "your own request" in text_of(ann, "#approvals-status"),
                    "the refusal")
        await pilot.press("m")  # only mine: with its state
        await until(pilot, lambda: bool(rows(ann)) and rows(ann)[0][5].startswith("pending"),
                    "mine")


@sync
async def test_next_claims_and_opens_the_most_urgent_then_release(staff: Staff) -> None:
    rt = staff.rt
    held(rt, "CALM", 1)
    held(rt, "HOT", 2, amount="4.2")  # amount_outlier too: the riskiest
    ann = PolysecApp(rt, session=staff.login("ann"))
    async with ann.run_test(size=(150, 44)) as pilot:
        await pilot.press(DESTINATIONS["withdrawals"].key)
        await until(pilot, lambda: isinstance(ann.screen, WithdrawalQueueScreen)
                    and ann.screen.page is not None, "the queue")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(ann.screen, WithdrawalDetailScreen)
                    and ann.screen.detail is not None, "the claimed withdrawal")
        detail = ann.screen
        assert isinstance(detail, WithdrawalDetailScreen)
        assert detail.ref == "HOT" and detail.detail is not None
        assert detail.detail.item.claimed_by == "ann"
        await pilot.press("u")
        await until(pilot, lambda: detail.detail is not None
                    and detail.detail.item.status == "held", "the release")
    assert wds.show(rt, staff.actors["ann"], "HOT").item.claimed_by is None


@sync
async def test_the_decision_prompt_records_the_chosen_outcome(staff: Staff) -> None:
    from sqlalchemy import select
    from textual.widgets import Select

    from polysec_tui.db.models import CaseOutcome
    from polysec_tui.screens.withdrawals import NotePrompt

    rt = staff.rt
    held(rt, "CALM", 1)
    ann = PolysecApp(rt, session=staff.login("ann"))
    async with ann.run_test(size=(150, 44)) as pilot:
        await ann.push_screen(WithdrawalDetailScreen("CALM"))
        await until(pilot, lambda: isinstance(ann.screen, WithdrawalDetailScreen)
                    and ann.screen.detail is not None, "the detail")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(ann.screen, NotePrompt), "the prompt")
        choice = ann.screen.query_one("#note-outcome", Select)
        assert choice.value == "false_positive"  # an approval's usual outcome
        choice.value = "benign"
        await pilot.press(*"client travelling, called back", "enter")
        await until(pilot, lambda: status(rt, "CALM") == "approved", "the approval")
    with rt.sessions() as s:
        recorded = s.scalars(select(CaseOutcome)).one()
    assert (recorded.subject, recorded.outcome, recorded.reason) == (
        "withdrawal:CALM", "benign", "client travelling, called back")


@sync
async def test_my_work_from_the_dashboard(staff: Staff) -> None:
    from polysec_tui.screens.mywork import MyWorkScreen

    rt = staff.rt
    held(rt, "MINE", 1)
    held(rt, "BIG", 2, amount="1.5")
    wds.claim(rt, staff.actors["ann"], "MINE")
    wds.claim(rt, staff.actors["sue"], "BIG")
    wds.approve(rt, staff.actors["sue"], "BIG", "client called")
    ann = PolysecApp(rt, session=staff.login("ann"))
    async with ann.run_test(size=(150, 44)) as pilot:
        await until(pilot, lambda: ann.screen.__class__.__name__ == "DashboardScreen",
                    "the dashboard")
        await pilot.press("w")
        await until(pilot, lambda: isinstance(ann.screen, MyWorkScreen)
                    and ann.screen.mine is not None, "my work")
        assert rows(ann, "#mywork-claimed")[0][1] == "MINE"
        assert rows(ann, "#mywork-decide") == []  # an analyst decides no four-eyes request
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(ann.screen, WithdrawalDetailScreen),
                    "the withdrawal")
    sam = PolysecApp(rt, session=staff.login("sam"))
    async with sam.run_test(size=(150, 44)) as pilot:
        await until(pilot, lambda: sam.screen.__class__.__name__ == "DashboardScreen",
                    "the dashboard")
        await pilot.press("w")
        await until(pilot, lambda: isinstance(sam.screen, MyWorkScreen)
                    and sam.screen.mine is not None, "my work")
        assert rows(sam, "#mywork-decide")[0][2] == "approve withdrawal BIG"
        sam.screen.query_one("#mywork-decide", DataTable).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(sam.screen, ApprovalsScreen), "the inbox")


@sync
async def test_marked_rows_rejected_at_once_and_failures_listed(staff: Staff) -> None:
    from polysec_tui.screens.withdrawals import NotePrompt

    rt = staff.rt
    for n, ext in enumerate(("M1", "M2", "TAKEN"), 1):
        held(rt, ext, n)
    ann = PolysecApp(rt, session=staff.login("ann"))
    async with ann.run_test(size=(150, 44)) as pilot:
        await pilot.press(DESTINATIONS["withdrawals"].key)
        await until(pilot, lambda: isinstance(ann.screen, WithdrawalQueueScreen)
                    and ann.screen.page is not None, "the queue")
        queue = ann.screen
        assert isinstance(queue, WithdrawalQueueScreen)
        await pilot.press("space", "space", "space")  # marks each row, moving down
        assert sorted(queue.marked) == ["M1", "M2", "TAKEN"]
        wds.claim(rt, staff.actors["sam"], "TAKEN")  # meanwhile, another officer claims one
        await pilot.press("X")
        await until(pilot, lambda: isinstance(ann.screen, NotePrompt), "the confirmation")
        assert "Reject 3 withdrawal(s)" in str(ann.screen.query_one(Static).render())
        await pilot.press(*"phishing wave", "enter")
        await until(pilot, lambda: queue.marked == ["TAKEN"], "the decisions")
        assert any("Not done: TAKEN" in str(n.title) for n in ann._notifications)
        assert any("reject: 2 of 3 done, 1 failed" in t for t in toasts(ann))
    assert [status(rt, e) for e in ("M1", "M2", "TAKEN")] == ["rejected", "rejected",
                                                             "in_review"]


# --------------------------------------------------------------------------- snapshot


@pytest.fixture
def inbox_staff(tmp_path: Path, keyring_path: Path,
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
    build_history(rt)
    make_client(rt)
    held(rt, "T1", 1, amount="1.5")
    wds.claim(rt, staff.actors["ann"], "T1")
    wds.approve(rt, staff.actors["ann"], "T1", "client confirmed by phone, ticket 4411")
    twofa.request_reset(rt, staff.actors["sam"], "A2", "client lost their phone",
                        "video call, case C-1", PROOF)
    protection.freeze(rt, staff.actors["ann"], "A1", "suspicious withdrawals")
    protection.request_unfreeze(rt, staff.actors["ann"], "A1", "client verified in branch")
    yield staff
    engine.dispose()


def test_snapshot_the_inbox(snap_compare: Any, inbox_staff: Staff) -> None:
    app = PolysecApp(inbox_staff.rt, session=inbox_staff.login("sue"))

    async def before(pilot: Pilot[Any]) -> None:
        await pilot.press(DESTINATIONS["approvals"].key)
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen)
                    and len(rows(app)) == 3, "the inbox")
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await quiet(pilot)

    assert snap_compare(app, terminal_size=(150, 36), run_before=before)
