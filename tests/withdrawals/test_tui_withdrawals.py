"""The review queue and the withdrawal detail in the console, driven by Pilot on a
temporary database with a pinned clock (all three engines); snapshots on SQLite."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from sqlalchemy import select
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from polysec_tui.app import DESTINATIONS, PolysecApp, screen_class
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import Hold, Withdrawal
from polysec_tui.screens.withdrawals import (
    NotePrompt,
    WithdrawalDetailScreen,
    WithdrawalQueueScreen,
    age_text,
)
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.helpers import ingest
from tests.support.screening import build_history, held, iso, request, status
from tests.support.tui import Session, SnapshotRuntime, log_in, quiet, sync

HOSTILE = "bc1q[@click=app.quit]x[/]"


def fill(rt: Runtime) -> None:
    """T1 held an hour ago, T2 held five hours ago (past the 4 h SLA) with a larger,
    outlying amount, T3 ordinary (pending), T4 held to a hostile-looking address."""
    build_history(rt)
    suspicious: dict[str, Any] = {"ip": "198.51.100.9", "address": "bc1qnewdestination",
                                  "login_extra": {"country": "FR"}}
    request(rt, "T1", **suspicious)
    request(rt, "T2", **suspicious, ago=timedelta(hours=5), amount="4.2")
    request(rt, "T3")
    request(rt, "T4", ip="192.0.2.44", login_extra={"country": "NL"}, address=HOSTILE,
            amount="0.2", ago=timedelta(hours=3, minutes=30))
    assert [status(rt, e) for e in ("T1", "T2", "T3", "T4")] == [
        "held", "held", "pending", "held"]


@pytest.fixture
def officer(runtime: Runtime) -> Session:
    session = log_in(runtime)
    fill(runtime)
    return session


async def until(pilot: Pilot[Any], condition: Callable[[], bool]) -> None:
    for _ in range(300):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if condition() and not any(w.is_running for w in pilot.app.workers):
            return
    raise AssertionError("the screen did not get there")


def queue_loaded(app: PolysecApp) -> Callable[[], bool]:
    return lambda: (isinstance(app.screen, WithdrawalQueueScreen)
                    and app.screen.page is not None)


def detail_loaded(app: PolysecApp) -> Callable[[], bool]:
    return lambda: (isinstance(app.screen, WithdrawalDetailScreen)
                    and app.screen.detail is not None)


def rows(app: PolysecApp, selector: str) -> list[list[str]]:
    """The table's cells; for the queue, without its first column (the marks)."""
    table: DataTable[Text] = app.screen.query_one(selector, DataTable)
    skip = 1 if selector == "#queue-table" else 0
    return [[c.plain for c in table.get_row_at(i)][skip:] for i in range(table.row_count)]


def held_back(monkeypatch: pytest.MonkeyPatch, name: str) -> threading.Event:
    """`review.<name>` made to wait while the returned event is clear (a busy database);
    it starts set."""
    from polysec_tui.services.withdrawals import review

    real = getattr(review, name)
    gate = threading.Event()
    gate.set()

    def waiting(*args: Any, **kwargs: Any) -> Any:
        gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(review, name, waiting)
    return gate


async def open_queue(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, PolysecApp)
    await until(pilot, lambda: app.actor is not None)
    await pilot.press(DESTINATIONS["withdrawals"].key)
    await until(pilot, queue_loaded(app))


def test_queue_is_a_destination() -> None:
    assert screen_class(DESTINATIONS["withdrawals"].screen) is WithdrawalQueueScreen


def test_age_turns_amber_then_red() -> None:
    sla = timedelta(hours=4)
    assert age_text(FIXED_NOW - timedelta(hours=1), FIXED_NOW, sla).plain == "1h00m"
    due = age_text(FIXED_NOW - timedelta(hours=3, minutes=30), FIXED_NOW, sla)
    assert due.plain == "3h30m due" and str(due.style) == "yellow"
    late = age_text(FIXED_NOW - timedelta(days=1, hours=2), FIXED_NOW, sla)
    assert late.plain == "1d02h LATE" and str(late.style) == "bold red"


def searched(app: PolysecApp, typed: str) -> Callable[[], bool]:
    return lambda: getattr(app.screen, "search", None) == typed


def listing(app: PolysecApp, expected: list[str]) -> Callable[[], bool]:
    return lambda: sorted(r[5] for r in rows(app, "#queue-table")) == sorted(expected)


@sync
async def test_queue_lists_held_by_risk_and_sorts_and_filters(runtime: Runtime,
                                                               officer: Session) -> None:
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_queue(pilot)
        listed = rows(app, "#queue-table")
        # Highest risk first; T4 and T1 score alike: the older first.
        assert [r[5] for r in listed] == ["T2", "T4", "T1"]
        assert listed[0][0] == "5h00m LATE" and listed[1][0] == "3h30m due"
        assert listed[2][0] == "1h00m"
        assert listed[0][8].startswith("ip_not_seen, new_country, amount_outlier")
        assert listed[2][7] == ""
        await pilot.press("s", "s")  # age, then amount: largest first
        await until(pilot, lambda: app.screen.sort == "amount")  # type: ignore[attr-defined]
        assert [r[5] for r in rows(app, "#queue-table")] == ["T2", "T1", "T4"]
        # The filter line matches any column the queue shows, in the query: a rule, an
        # account, the beginning of a withdrawal id.
        for typed, expected in (("amount_outlier", ["T2"]), ("T4", ["T4"]),
                                (listed[2][6], [r[5] for r in listed if r[6] == listed[2][6]])):
            await pilot.press("slash")
            app.screen.query_one("#queue-filter", Input).value = ""
            await pilot.press(*typed, "enter")
            await until(pilot, searched(app, typed))
            await until(pilot, listing(app, expected))
        await pilot.press("slash")
        app.screen.query_one("#queue-filter", Input).value = ""
        await pilot.press("enter")  # empty clears
        await until(pilot, lambda: app.screen.search == "")  # type: ignore[attr-defined]
        await until(pilot, lambda: len(rows(app, "#queue-table")) == 3)
        await pilot.press("f", "f", "f", "f")  # open -> held -> in_review -> escalated -> pending
        await until(pilot, lambda: app.screen.queue_status == "pending")  # type: ignore[attr-defined]
        pending = rows(app, "#queue-table")
        assert "T3" in [r[5] for r in pending]
        # Below the hold threshold nobody's work: no SLA clock, however old.
        assert not any(r[0].endswith(("LATE", "due")) for r in pending), pending


def fill_priced(rt: Runtime) -> None:
    """``fill`` with a held ETH withdrawal and the platform's USD prices of BTC and ETH
    (none of DOGE)."""
    fill(rt)
    held(rt, "E1", 11, asset="ETH", amount="30")
    held(rt, "D1", 12, asset="DOGE", amount="900000")
    ingest(rt, "prices",
           *({"asset": a, "currency": "USD", "price": p, "at": iso(timedelta(days=d))}
             for a, p in (("BTC", "40000"), ("ETH", "3000")) for d in (1, 2)))


@sync
async def test_queue_shows_values_and_sorts_assets_by_them(runtime: Runtime) -> None:
    session = log_in(runtime)
    fill_priced(runtime)
    app = PolysecApp(runtime, session=session)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_queue(pilot)
        table = app.screen.query_one("#queue-table", DataTable)
        assert [c.label.plain for c in table.ordered_columns][6] == "Value USD"
        values = {r[6]: r[5] for r in rows(app, "#queue-table")}
        assert values["E1"] == "90,000.00" and values["T2"] == "168,000.00"
        assert values["D1"] == "no price"
        await pilot.press("s", "s")  # age, then amount: by value
        await until(pilot, lambda: app.screen.sort == "amount")  # type: ignore[attr-defined]
        assert [r[6] for r in rows(app, "#queue-table")] == ["T2", "E1", "T1", "T4", "D1"]
        status_line = str(app.screen.query_one("#queue-status", Static).render())
        assert "value in USD" in status_line
        await pilot.press("down", "enter")  # E1
        await until(pilot, detail_loaded(app))
        head = str(app.screen.query_one("#detail-head", Static).render())
        assert "30 ETH (~90,000.00 USD at 3000 USD, priced" in head


@sync
async def test_detail_claim_and_reject_with_a_note(runtime: Runtime, officer: Session) -> None:
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_queue(pilot)
        await pilot.press("down", "down")  # T1
        await pilot.press("enter")
        await until(pilot, detail_loaded(app))
        flags = rows(app, "#detail-flags")
        assert [f[0] for f in flags] == ["ip_not_seen", "new_country", "new_destination"]
        assert flags[1][2].startswith("request from country FR")
        assert "198.51.100.9" in [r[2] for r in rows(app, "#detail-logins")[:2]]
        await pilot.press("c")
        await until(pilot, lambda: app.screen.detail is not None  # type: ignore[attr-defined]
                    and app.screen.detail.item.status == "in_review")  # type: ignore[attr-defined]
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, NotePrompt))
        await pilot.press("enter")  # an empty note is refused
        assert isinstance(app.screen, NotePrompt)
        await pilot.press(*"mule", "enter")
        await until(pilot, lambda: isinstance(app.screen, WithdrawalDetailScreen)
                    and app.screen.detail is not None
                    and app.screen.detail.item.status == "rejected")
        assert status(runtime, "T1") == "rejected"
        decisions = str(app.screen.query_one("#detail-decisions", Static).render())
        assert "chief claim" in decisions and "chief reject: mule" in decisions
        await pilot.press("escape")
        await until(pilot, queue_loaded(app))
        await until(pilot, lambda: [r[5] for r in rows(app, "#queue-table")] == ["T2", "T4"])



@sync
async def test_leaving_while_a_decision_commits_waits_for_it(
        runtime: Runtime, officer: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """Esc pressed while a decision is still being recorded leaves once it is: the
    officer sees its outcome, and the queue is read after it (not still showing the
    withdrawal as it was)."""
    recorded = held_back(monkeypatch, "reject")
    recorded.clear()  # until the test has pressed its key
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_queue(pilot)
        await pilot.press("down", "down", "enter")  # T1
        await until(pilot, detail_loaded(app))
        detail = app.screen
        await pilot.press("c")
        await until(pilot, lambda: app.screen.detail is not None  # type: ignore[attr-defined]
                    and app.screen.detail.item.status == "in_review")  # type: ignore[attr-defined]
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, NotePrompt))
        await pilot.press(*"mule", "enter")
        await pilot.press("escape")  # while the reject is recorded
        assert app.screen is detail
        recorded.set()
        await until(pilot, queue_loaded(app))
        assert [r[5] for r in rows(app, "#queue-table")] == ["T2", "T4"]
        assert any("rejected" in str(n.message) for n in app._notifications)
    assert status(runtime, "T1") == "rejected"


@sync
async def test_the_queue_follows_another_console(runtime: Runtime, officer: Session,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """While shown, the queue reads its page again: another console's claim appears
    without a key."""
    from polysec_tui.screens import withdrawals as screens
    from polysec_tui.services.withdrawals import review

    monkeypatch.setattr(screens, "QUEUE_REFRESH_SECONDS", 0.2)
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_queue(pilot)
        assert not any("chief" in cell for row in rows(app, "#queue-table") for cell in row)
        review.claim(runtime, officer[1], "T1")
        for _ in range(100):
            await pilot.pause(0.05)
            if any("chief" in cell for row in rows(app, "#queue-table") for cell in row):
                break
        claimed = [row for row in rows(app, "#queue-table") if "T1" in row]
        assert claimed and "chief" in claimed[0]


@sync
async def test_one_decision_at_a_time(runtime: Runtime, officer: Session,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A decision key while another decision is recorded is refused: it would cancel
    the first (its outcome never shown) and act on a withdrawal about to change."""
    recorded = held_back(monkeypatch, "reject")
    recorded.clear()
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_queue(pilot)
        await pilot.press("down", "down", "enter")  # T1
        await until(pilot, detail_loaded(app))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, NotePrompt))
        await pilot.press(*"mule", "enter")
        await pilot.press("c")  # while the reject is recorded
        status_line = app.screen.query_one("#detail-status", Static)
        assert "a decision is being recorded" in str(status_line.render())
        recorded.set()
        await until(pilot, lambda: app.screen.detail is not None  # type: ignore[attr-defined]
                    and app.screen.detail.item.status == "rejected")  # type: ignore[attr-defined]
        assert "withdrawal T1 rejected" in str(status_line.render())
    assert status(runtime, "T1") == "rejected"


@sync
async def test_the_next_decision_waits_for_the_view_of_the_last(
        runtime: Runtime, officer: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """Claimed, the view of the claim still loading: `x` then would be taken on the view
    before the claim (and refused as stale, the note lost); it waits instead."""
    shown = held_back(monkeypatch, "show")
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_queue(pilot)
        await pilot.press("down", "down", "enter")  # T1
        await until(pilot, detail_loaded(app))
        assert isinstance(app.screen, WithdrawalDetailScreen)
        detail: WithdrawalDetailScreen = app.screen
        status_line = detail.query_one("#detail-status", Static)
        shown.clear()
        await pilot.press("c")
        for _ in range(200):
            await pilot.pause(0.01)
            if "in_review" in str(status_line.render()):
                break
        await pilot.press("x")
        assert app.screen is detail
        assert "a decision is being recorded" in str(status_line.render())
        shown.set()
        await until(pilot, lambda: detail.detail is not None
                    and detail.detail.item.status == "in_review")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, NotePrompt))
        await pilot.press(*"mule", "enter")
        await until(pilot, lambda: detail.detail is not None
                    and detail.detail.item.status == "rejected")
    assert status(runtime, "T1") == "rejected"


@sync
async def test_the_detail_follows_another_console(runtime: Runtime, officer: Session,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """What another console records appears by itself, and a decision taken from the
    view before it is refused, naming the change (not taken over what the officer never
    saw)."""
    from polysec_tui.screens import withdrawals as screens
    from polysec_tui.services.withdrawals import review

    actor = officer[1]
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_queue(pilot)
        await pilot.press("down", "down", "enter")  # T1, held
        await until(pilot, detail_loaded(app))
        detail = app.screen
        assert isinstance(detail, WithdrawalDetailScreen)
        # Another console claims and escalates it.
        review.claim(runtime, actor, "T1")
        review.escalate(runtime, actor, "T1", "DO NOT APPROVE: sim swap")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, NotePrompt))
        await pilot.press(*"fraud", "enter")
        await until(pilot, lambda: detail.detail is not None
                    and detail.detail.item.status == "escalated")
        status_line = str(detail.query_one("#detail-status", Static).render())
        assert "changed since you looked at it" in status_line
        assert "DO NOT APPROVE" in status_line
        assert status(runtime, "T1") == "escalated"
        # The view now shows the change; the same key decides from it.
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, NotePrompt))
        await pilot.press(*"fraud", "enter")
        await until(pilot, lambda: detail.detail is not None
                    and detail.detail.item.status == "rejected")
    assert status(runtime, "T1") == "rejected"

    # And without a key: the detail reads itself again while shown.
    monkeypatch.setattr(screens, "DETAIL_REFRESH_SECONDS", 0.2)
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_queue(pilot)
        await pilot.press("down", "down", "enter")  # T2 now first: T1 was decided
        await until(pilot, detail_loaded(app))
        shown = app.screen
        assert isinstance(shown, WithdrawalDetailScreen)
        review.claim(runtime, actor, shown.ref)
        for _ in range(100):
            await pilot.pause(0.05)
            if shown.detail is not None and shown.detail.item.status == "in_review":
                break
        assert shown.detail is not None and shown.detail.item.status == "in_review"
        assert "changed meanwhile" in str(shown.query_one("#detail-status", Static).render())


@sync
async def test_escape_cancels_a_decision_and_holds_refuse_approval(
        runtime: Runtime, officer: Session) -> None:
    with runtime.sessions() as s:
        account_id = s.scalar(select(Withdrawal.account_id).where(Withdrawal.external_id == "T1"))
    with runtime.transaction() as s:
        s.add(Hold(account_id=account_id, kind="security_change", reason="client 2FA reset",
                   created_at=FIXED_NOW - timedelta(hours=1),
                   expires_at=FIXED_NOW + timedelta(hours=47)))
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_queue(pilot)
        await pilot.press("down", "down", "enter")
        await until(pilot, detail_loaded(app))
        head = str(app.screen.query_one("#detail-head", Static).render())
        assert "HOLD" in head and "client 2FA reset" in head
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, NotePrompt))
        await pilot.press("escape")
        await until(pilot, detail_loaded(app))
        assert status(runtime, "T1") == "held"
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, NotePrompt))
        await pilot.press(*"ok", "enter")
        await until(pilot, lambda: "-error" in app.screen.query_one("#detail-status").classes)
        assert "active security_change hold" in str(
            app.screen.query_one("#detail-status", Static).render())
        assert status(runtime, "T1") == "held"


@sync
async def test_detail_opens_timeline_anomalies_and_2fa_reset(runtime: Runtime,
                                                            officer: Session) -> None:
    from polysec_tui.screens.anomalies import AnomaliesScreen
    from polysec_tui.screens.timeline import TimelineScreen
    from polysec_tui.screens.twofa import TwoFactorResetScreen

    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_queue(pilot)
        await pilot.press("enter")
        await until(pilot, detail_loaded(app))
        assert isinstance(app.screen, WithdrawalDetailScreen) and app.screen.detail
        account_id = app.screen.detail.account_id
        targets: list[tuple[str, type[Any]]] = [
            ("t", TimelineScreen), ("o", AnomaliesScreen), ("f", TwoFactorResetScreen)]
        for key, kind in targets:
            await pilot.press(key)
            await until(pilot, functools.partial(lambda k: isinstance(app.screen, k), kind))
            assert app.screen.account_id == account_id  # type: ignore[attr-defined]
            app.pop_screen()
            await until(pilot, detail_loaded(app))


@sync
async def test_hostile_address_is_literal(runtime: Runtime, officer: Session) -> None:
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_queue(pilot)
        await pilot.press("down", "enter")
        await until(pilot, detail_loaded(app))
        assert HOSTILE in str(app.screen.query_one("#detail-head", Static).render())
        assert app.is_running


# ------------------------------------------------------------------------ snapshots


@pytest.fixture
def snapshot_runtime(tmp_path: Path, keyring_path: Path) -> Iterator[Runtime]:
    url = f"sqlite:///{tmp_path / 'snapshot.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    rt = SnapshotRuntime(Settings(url, keyring_path), engine, load_keyring(keyring_path),
                         clock=lambda: FIXED_NOW)
    yield rt
    engine.dispose()


def test_snapshot_queue(snap_compare: Any, snapshot_runtime: Runtime) -> None:
    session = log_in(snapshot_runtime)
    fill(snapshot_runtime)

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_queue(pilot)
        await quiet(pilot)  # the live dashboard's alerts are not this screen

    assert snap_compare(PolysecApp(snapshot_runtime, session=session),
                        terminal_size=(126, 30), run_before=run_before)


def test_snapshot_queue_with_values(snap_compare: Any, snapshot_runtime: Runtime) -> None:
    session = log_in(snapshot_runtime)
    fill_priced(snapshot_runtime)

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_queue(pilot)
        await pilot.press("s", "s")
        await until(pilot, lambda: pilot.app.screen.sort == "amount")  # type: ignore[attr-defined]
        await quiet(pilot)

    assert snap_compare(PolysecApp(snapshot_runtime, session=session),
                        terminal_size=(126, 30), run_before=run_before)


def test_snapshot_detail(snap_compare: Any, snapshot_runtime: Runtime) -> None:
    session = log_in(snapshot_runtime)
    fill(snapshot_runtime)

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_queue(pilot)
        await pilot.press("enter")
        await until(pilot, detail_loaded(pilot.app))  # type: ignore[arg-type]
        await quiet(pilot)

    assert snap_compare(PolysecApp(snapshot_runtime, session=session),
                        terminal_size=(140, 56), run_before=run_before)


@sync
async def test_the_filter_line_closes_when_its_page_fails(runtime: Runtime, officer: Session,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """The filter line closes with its page; a load that fails (the database gone) must
    close it too, not leave it open with the focus for a later load to snatch."""
    from sqlalchemy.exc import OperationalError

    from polysec_tui.services.withdrawals import review

    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_queue(pilot)
        real = review.list_queue

        def failing(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("search"):
                raise OperationalError("SELECT", {}, Exception("database is locked"))
            return real(*args, **kwargs)

        monkeypatch.setattr(review, "list_queue", failing)
        await pilot.press("slash", *"T4", "enter")
        box = app.screen.query_one("#queue-filter", Input)
        for _ in range(100):
            await pilot.pause()
            if not box.display:
                break
        assert not box.display
        assert isinstance(app.focused, DataTable)
        assert app.screen._closing_filter is False  # type: ignore[attr-defined]


class FakeQueue:
    """`review.list_queue` over ``total`` made-up withdrawals, with a record of what was
    asked and a gate that holds every fetch while closed."""

    def __init__(self, total: int) -> None:
        import threading
        from decimal import Decimal

        from polysec_tui.services.withdrawals import review

        self.review = review
        self.items = [review.QueueItem(
            n, f"W{n:04d}", f"acc{n:04d}", FIXED_NOW - timedelta(minutes=n), "BTC",
            Decimal("0.1"), "bc1qx", "held", 50.0, ("new_destination",), None)
            for n in range(total)]
        self.asked: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, rt: Runtime, actor: Any, **kwargs: Any) -> Any:
        self.asked.append(kwargs["offset"])
        assert self.gate.wait(10)
        offset, limit = kwargs["offset"], kwargs["limit"]
        return self.review.QueuePage(tuple(self.items[offset:offset + limit]),
                                     len(self.items), offset, limit)


def first_id(app: PolysecApp) -> str:
    return rows(app, "#queue-table")[0][5]


@contextlib.asynccontextmanager
async def queue_over(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, fake: FakeQueue
                     ) -> AsyncIterator[tuple[PolysecApp, Pilot[Any], WithdrawalQueueScreen]]:
    """The console logged in and on the queue, its pages from ``fake``."""
    from polysec_tui.services.withdrawals import review

    monkeypatch.setattr(review, "list_queue", fake)
    app = PolysecApp(runtime, session=log_in(runtime))
    async with app.run_test(size=(160, 40)) as pilot:
        await open_queue(pilot)
        queue = app.screen
        assert isinstance(queue, WithdrawalQueueScreen)
        yield app, pilot, queue


@sync
async def test_the_next_page_is_fetched_ahead_and_shown_at_once(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the officer reads a page the next one is fetched; `]` shows it at once and
    fetches it again behind it, so that what changed meanwhile follows; a page fetched
    ahead for where the officer no longer is stays unseen; `r` never shows a kept page."""
    from polysec_tui.screens import withdrawals as screen_module

    fake = FakeQueue(120)
    async with queue_over(runtime, monkeypatch, fake) as (app, pilot, queue):
        await until(pilot, lambda: fake.asked == [0, 50])  # the first page, then the next
        fake.gate.clear()  # from now on every fetch waits
        await pilot.press("right_square_bracket")
        # Shown from what was fetched ahead, while its fetch again is still held.
        assert queue.page is not None and queue.page.offset == 50
        assert first_id(app) == "W0050"
        fake.items[50] = replace(fake.items[50], status="escalated")  # changed meanwhile
        fake.gate.set()
        await until(pilot, lambda: rows(app, "#queue-table")[0][1] == "escalated")
        # Fetched again, and the next one ahead.
        await until(pilot, lambda: sorted(fake.asked[2:]) == [50, 100])
        assert first_id(app) == "W0050"  # the one ahead arrived, and stays unseen
        # The page after: fetched ahead too; back: the page seen before, at once.
        fake.gate.clear()
        await pilot.press("left_square_bracket")
        assert first_id(app) == "W0000"
        fake.gate.set()
        await until(pilot, lambda: fake.asked[-1] == 0)
        # `r`: fetched afresh; the page shown stays until it comes.
        fake.gate.clear()
        shown = queue.page
        await pilot.press("r")
        await pilot.pause(0.3)
        assert queue.page is shown
        fake.gate.set()
        await until(pilot, lambda: queue.page is not shown)
        await until(pilot, lambda: queue.kept.keys() == {("open", "risk", "", 0),
                                                         ("open", "risk", "", 50)})
        # A kept page too old to show is fetched before it is shown.
        monkeypatch.setattr(screen_module, "PAGE_KEPT_SECONDS", 0.0)
        fake.gate.clear()
        await pilot.press("right_square_bracket")
        await pilot.pause(0.3)
        assert first_id(app) == "W0000"
        fake.gate.set()
        await until(pilot, lambda: first_id(app) == "W0050")


@sync
async def test_a_page_fetched_before_a_reload_is_not_kept(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page fetched ahead whose answer the screen handles only after a reload (a
    decision, `r`: the loop was busy meanwhile) is dropped: `]` then fetches, and shows
    the page as it is now."""
    import threading

    from polysec_tui.screens.withdrawals import Fetched

    fake = FakeQueue(120)
    async with queue_over(runtime, monkeypatch, fake) as (app, pilot, queue):
        await until(pilot, lambda: fake.asked == [0, 50])
        posted = threading.Event()
        real_post = queue.post_message

        def post(message: Any) -> bool:
            sent = real_post(message)
            if isinstance(message.data if isinstance(message, WithdrawalQueueScreen.Loaded)
                          else None, Fetched) and message.data.key[3] == 50:
                posted.set()
            return sent

        monkeypatch.setattr(queue, "post_message", post)
        queue.kept.clear()
        fake.gate.clear()
        queue.fetch_ahead(0, ("open", "risk", "", 50))
        for _ in range(100):
            await pilot.pause(0.02)
            if len(fake.asked) > 2:
                break
        fake.gate.set()  # nothing awaits from here on: the loop is busy
        assert posted.wait(5)
        fake.items[50] = replace(fake.items[50], status="rejected")  # the decision
        queue.reload()  # it cancels the fetch ahead (whose answer is already posted)
        ahead = ("open", "risk", "", 50)
        for _ in range(100):  # the page again, then the next one fetched ahead anew
            await pilot.pause(0.02)
            if ahead in queue.kept:
                break
        assert queue.kept[ahead][1].items[0].status == "rejected"
        fake.gate.clear()
        await pilot.press("right_square_bracket")  # shown from what is kept: as it is now
        assert first_id(app) == "W0050" and rows(app, "#queue-table")[0][1] == "rejected"
        fake.gate.set()


@sync
async def test_the_cursor_stays_on_its_withdrawal_when_the_page_comes_again(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept page is fetched again behind it: when a withdrawal above the cursor left
    the queue meanwhile, the cursor stays on its withdrawal, not on its row number."""

    fake = FakeQueue(120)
    async with queue_over(runtime, monkeypatch, fake) as (app, pilot, queue):
        await until(pilot, lambda: fake.asked == [0, 50])
        fake.gate.clear()
        await pilot.press("right_square_bracket", "down", "down", "down")
        table = queue.query_one("#queue-table", DataTable)
        assert rows(app, "#queue-table")[table.cursor_row][5] == "W0053"
        del fake.items[51]  # another officer decided W0051
        fake.gate.set()
        await until(pilot, lambda: len(fake.asked) >= 4)
        assert rows(app, "#queue-table")[table.cursor_row][5] == "W0053"


@sync
async def test_keys_typed_in_the_filter_line_stay_there(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """shift+down in the filter line marks no row; Esc closes the line (the queue stays
    shown), then leaves the queue."""

    async with queue_over(runtime, monkeypatch, FakeQueue(10)) as (app, pilot, queue):
        box = queue.query_one("#queue-filter", Input)
        await pilot.press("slash", *"W00", "shift+down", "shift+down", "escape")
        await pilot.pause()
        assert queue.marked == [] and app.screen is queue and not box.display
        assert isinstance(app.focused, DataTable)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not queue
