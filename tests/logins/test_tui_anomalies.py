"""The anomalies and timeline screens, driven by Pilot on fixed data, plus snapshots.

The data: account A1 logs in from Berlin for ten days, then suffers a burst of failed
logins (with a hostile user agent) and, an hour after a Berlin login, a login from New
York (impossible travel); B2 has an ordinary history. `analyze` runs once, so the
findings are those of the real detectors.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static

from polysec_tui.app import DESTINATIONS, PolysecApp
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.screens.account import AccountScreen
from polysec_tui.screens.anomalies import AnomaliesScreen, triage_order
from polysec_tui.screens.charts import day_chart, location_map
from polysec_tui.screens.dashboard import DashboardScreen
from polysec_tui.screens.incidents import AttachScreen
from polysec_tui.screens.timeline import TimelineScreen
from polysec_tui.services.clients import accounts, incidents
from polysec_tui.services.logins import anomalies
from polysec_tui.services.logins.timeline import DayCount, LocatedLogin
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest, ingest_records, login
from tests.support.tui import Session, SnapshotRuntime, log_in, quiet, sync

CRON = Actor(uuid.UUID(int=1), "cron", "automation")
READER = Actor(uuid.UUID(int=2), "ann", "analyst")
HOSTILE_AGENT = "[@click=app.quit]x[/] [b]bold[/b]"
NEW_YORK = {"ip": "192.0.2.99", "asn": 7922, "country": "US", "city": "New York",
            "lat": 40.71, "lon": -74.0, "device_id": "dev-evil", "browser": "Firefox 125",
            "os": "Linux"}


def at(delta: timedelta) -> str:
    return (FIXED_NOW - delta).isoformat().replace("+00:00", "Z")


def load_story(rt: Runtime) -> None:
    ingest(rt, "accounts", account("A1"), account("B2"))
    records = []
    for day in range(10, 1, -1):
        records.append(login(f"a-home-{day}", "A1", at=at(timedelta(days=day, hours=3))))
        records.append(login(f"b-home-{day}", "B2", at=at(timedelta(days=day, hours=5)),
                             ip="203.0.113.50", city="Paris", country="FR", lat=48.86,
                             lon=2.35, asn=3215, device_id="dev-b"))
    for i in range(6):
        records.append(login(f"a-fail-{i}", "A1", at=at(timedelta(hours=6, minutes=-i)),
                             success=False, failure_reason="bad_password",
                             ip="198.51.100.7", user_agent=HOSTILE_AGENT))
    records.append(login("a-home-now", "A1", at=at(timedelta(hours=3))))
    records.append(login("a-newyork", "A1", at=at(timedelta(hours=2)), **NEW_YORK))
    ingest_records(rt, "logins", records)
    anomalies.analyze(rt, CRON)


def account_id(rt: Runtime, ext: str) -> uuid.UUID:
    return accounts.summary(rt, READER, ext).id


async def wait_loaded(pilot: Pilot[Any], kind: type[Any]) -> Any:
    """The current screen once it is of ``kind`` and has shown its data."""
    app = pilot.app
    for _ in range(200):
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        loaded = (isinstance(screen, AnomaliesScreen) and screen.found is not None) or (
            isinstance(screen, TimelineScreen) and screen.data is not None)
        if (isinstance(screen, kind) and loaded
                and not any(w.is_running for w in app.workers)):
            return screen
    raise AssertionError(f"{kind.__name__} did not load")


def rows(screen: Any, selector: str) -> list[list[str]]:
    table = screen.query_one(selector, DataTable)
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.fixture
def story(runtime: Runtime) -> Runtime:
    load_story(runtime)
    return runtime


@pytest.fixture
def officer(story: Runtime) -> Session:
    return log_in(story)


# ---------------------------------------------------------------------------- Pilot


@sync
async def test_anomalies_list_filter_and_open_timeline(story: Runtime,
                                                        officer: Session) -> None:
    app = PolysecApp(story, session=officer)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press(DESTINATIONS["anomalies"].key)
        screen = await wait_loaded(pilot, AnomaliesScreen)
        # One row per campaign: the six brute-force findings on A1 are one row of 6.
        grouped = rows(screen, "#an-table")
        found = anomalies.list_anomalies(story, READER)
        assert sum(int(r[4]) for r in grouped) == len(found)
        (brute,) = [r for r in grouped if r[3].endswith("brute_force")]
        assert (brute[4], brute[5]) == ("6", "A1")
        await pilot.press("c")  # one row per finding
        listed = rows(screen, "#an-table")
        kinds = {r[3] for r in listed}
        assert {"brute_force", "impossible_travel", "new_country"} <= kinds
        assert len(listed) == len(found)
        # newest day first, most severe first within the day
        assert listed[0][2] == "high" and listed[0][3] == "impossible_travel"
        detail = str(screen.query_one("#an-detail", Static).render())
        assert "km/h" in detail  # the explanation of the highlighted finding, in full

        screen.query_one("#an-kind", Select).value = "brute_force"
        screen = await wait_loaded(pilot, AnomaliesScreen)
        filtered = rows(screen, "#an-table")
        assert len(filtered) == 6 and {r[3] for r in filtered} == {"brute_force"}
        assert {r[5] for r in filtered} == {"A1"}

        # Grouped again: enter expands the campaign to its six findings, and folds it.
        await pilot.press("c")
        screen.query_one("#an-table", DataTable).focus()
        assert len(rows(screen, "#an-table")) == 1
        await pilot.press("enter")
        await pilot.pause()
        assert len(rows(screen, "#an-table")) == 7
        await pilot.press("down")
        screen.query_one("#an-table", DataTable).focus()
        await pilot.press("enter")
        timeline = await wait_loaded(pilot, TimelineScreen)
        assert timeline.account_id == account_id(story, "A1")
        assert timeline.data.timeline.account == "A1"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


@sync
async def test_marks_are_the_tables_keys(story: Runtime, officer: Session) -> None:
    """shift+down in the kind filter marks no finding (it did: the filter passed the
    key on to the screen's mark binding); in the table it marks."""
    app = PolysecApp(story, session=officer)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press(DESTINATIONS["anomalies"].key)
        screen = await wait_loaded(pilot, AnomaliesScreen)
        screen.query_one("#an-kind", Select).focus()
        await pilot.press("shift+down", "shift+down")
        assert screen.marked == set()
        screen.query_one("#an-table", DataTable).focus()
        await pilot.press("shift+down")
        assert screen.marked


@sync
async def test_timeline_shows_badges_chart_map_and_literal_agent(story: Runtime,
                                                                 officer: Session) -> None:
    app = PolysecApp(story, session=officer)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.push_screen(TimelineScreen(account_id(story, "A1")))
        screen = await wait_loaded(pilot, TimelineScreen)
        events = rows(screen, "#tl-events")
        assert events[-1][1] == "login" and "TRAVEL:H" in events[-1][3]
        assert "NEWCTRY:M" in events[-1][3]
        failed = [r for r in events if r[1] == "login FAILED"]
        assert len(failed) == 6 and all("BRUTE:M" in r[3] for r in failed)
        assert screen.query_one("#tl-events", DataTable).cursor_row == len(events) - 1

        chart = str(screen.query_one("#tl-days").render())
        assert "11 ok" in chart and "6 failed" in chart  # 9 home logins + 2 today
        plotted = str(screen.query_one("#tl-map").render())
        assert plotted.count("!") >= 2 + 1  # both ends of the trip, and the legend

        # The failed logins carry a user agent made of markup: shown as typed, inert.
        table = screen.query_one("#tl-events", DataTable)
        table.move_cursor(row=events.index(failed[0]))
        await pilot.pause()
        detail = screen.query_one("#tl-detail", Static).render()
        assert isinstance(detail, Content)
        assert HOSTILE_AGENT in detail.plain
        assert not any("click" in str(span.style) for span in detail.spans)
        await pilot.click("#tl-detail")
        await pilot.pause()
        assert app.is_running


@sync
async def test_timeline_opens_twofa_reset_and_back(story: Runtime, officer: Session) -> None:
    app = PolysecApp(story, session=officer)
    a1 = account_id(story, "A1")
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await app.push_screen(TimelineScreen(a1))
        screen = await wait_loaded(pilot, TimelineScreen)
        await pilot.press("f")
        await pilot.pause()
        assert type(app.screen).__name__ == "TwoFactorResetScreen"
        assert app.screen is not screen
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


@sync
async def test_account_screen_opens_timeline_and_timeline_asks_for_account(
        story: Runtime, officer: Session) -> None:
    app = PolysecApp(story, session=officer)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press(DESTINATIONS["account"].key)
        await pilot.pause()
        assert isinstance(app.screen, AccountScreen)
        await pilot.press(*"B2", "enter")
        for _ in range(50):
            await app.workers.wait_for_complete()
            await pilot.pause()
            if app.screen.summary is not None:
                break
        await pilot.press("t")
        timeline = await wait_loaded(pilot, TimelineScreen)
        assert timeline.account_id == account_id(story, "B2")

        # The timeline destination has no account yet: it asks for one.
        await pilot.press(DESTINATIONS["timeline"].key)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TimelineScreen) and screen.data is None
        await pilot.press(*"a1.doe@example.com", "enter")
        screen = await wait_loaded(pilot, TimelineScreen)
        assert screen.data.timeline.account == "A1"
        await pilot.press("escape")  # a destination: back to the dashboard
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)


# ----------------------------------------------------------------------- pure parts


@sync
async def test_a_marked_campaign_is_attached_to_an_incident(story: Runtime,
                                                          officer: Session) -> None:
    """space on a campaign marks all its findings; i attaches them to a new incident;
    a finding marked on its own goes with them."""
    app = PolysecApp(story, session=officer)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press(DESTINATIONS["anomalies"].key)
        screen = await wait_loaded(pilot, AnomaliesScreen)
        table = screen.query_one("#an-table", DataTable)
        shown = rows(screen, "#an-table")
        brute = next(i for i, r in enumerate(shown) if r[3].endswith("brute_force"))
        other = next(i for i, r in enumerate(shown) if i != brute)
        table.move_cursor(row=brute)
        await pilot.press("space")
        table.move_cursor(row=brute)
        await pilot.press("enter")  # expanded: every finding of it is marked
        await pilot.pause()
        expanded = rows(screen, "#an-table")
        assert [r[0] for r in expanded[brute:brute + 7]] == ["✓"] * 7
        other = next(i for i, r in enumerate(expanded) if r[3] == shown[other][3])
        table.move_cursor(row=other)
        await pilot.press("enter")  # a second campaign, expanded: mark one finding of it
        await pilot.pause()
        table.move_cursor(row=other + 1)
        await pilot.press("space")
        assert rows(screen, "#an-table")[other][0] in ("✓", "~")
        await pilot.press("i")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, AttachScreen)
        modal.query_one("#attach-title", Input).focus()
        await pilot.press(*"brute force on A1", "enter")
        for _ in range(50):
            if app.screen is screen:
                break
            await pilot.pause(0.05)
        assert app.screen is screen
        assert isinstance(screen, AnomaliesScreen) and screen.marked == set()
    (made,) = incidents.list_incidents(story, officer[1])
    linked = [ref for kind, ref in incidents.show(story, officer[1], made.id).links
              if kind == "anomaly"]
    assert len(linked) == 7


@sync
async def test_the_findings_table_filters_sorts_and_copies(story: Runtime,
                                                          officer: Session) -> None:
    app = PolysecApp(story, session=officer)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press(DESTINATIONS["anomalies"].key)
        screen = await wait_loaded(pilot, AnomaliesScreen)
        await pilot.press("c")  # one row per finding
        everything = rows(screen, "#an-table")
        await pilot.press("slash", *"brute", "enter")
        await pilot.pause()
        brute = rows(screen, "#an-table")
        assert len(brute) == 6 < len(everything)
        assert {r[3] for r in brute} == {"brute_force"}
        await pilot.press("s", "s", "s", "s")  # by kind
        assert "sorted by Kind" in (screen.query_one("#an-table", DataTable).border_subtitle
                                    or "")
        await pilot.press("enter")  # the row's own finding, however the table is sorted
        timeline = await wait_loaded(pilot, TimelineScreen)
        assert timeline.account_id == account_id(story, "A1")
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == "A1"


def test_triage_order() -> None:
    def view(hours: int, severity: str) -> anomalies.AnomalyView:
        return anomalies.AnomalyView(0, "k", severity, 1.0, FIXED_NOW - timedelta(hours=hours),
                                     "A", "l", None, None, "", {}, FIXED_NOW, uuid.UUID(int=9))
    found = [view(1, "low"), view(3, "critical"), view(30, "critical"), view(2, "medium")]
    assert [(v.severity, int((FIXED_NOW - v.at).total_seconds() // 3600))
            for v in triage_order(found)] == [
        ("critical", 3), ("medium", 2), ("low", 1), ("critical", 30)]
    assert [v.severity for v in triage_order(found, severity_first=True)] == [
        "critical", "critical", "medium", "low"]


def test_day_chart_stacks_failures_over_successes() -> None:
    start = FIXED_NOW.date()
    days = [DayCount(start - timedelta(days=2), 4, 0), DayCount(start - timedelta(days=1), 0, 0),
            DayCount(start, 2, 2)]
    lines = day_chart(days, 10, 6).plain.splitlines()
    bars = [line[4:7] for line in lines[:4]]
    assert bars == ["█ ▒", "█ ▒", "█ █", "█ █"]
    assert lines[0].startswith("  4│")
    assert lines[-1].startswith("█ 6 ok  ▒ 2 failed  3 days")


def test_location_map_marks_impossible_trip() -> None:
    def p(name: str, lat: float, lon: float, bad: bool = False) -> LocatedLogin:
        return LocatedLogin(name, FIXED_NOW, lat, lon, None, None, bad)

    calm = location_map([p("a", 52.5, 13.4), p("b", 48.9, 2.4)], 40, 10).plain
    assert "!" not in calm.splitlines()[0] and calm.count("o") + calm.count("@") >= 2
    trip = location_map([p("a", 52.5, 13.4), p("b", 40.7, -74.0, True)], 40, 10).plain
    assert sum(line.count("!") for line in trip.splitlines()[:-1]) == 2
    assert "°N" in trip.splitlines()[-1]


# ------------------------------------------------------------------------ snapshots


@pytest.fixture
def snapshot_story(tmp_path: Path, keyring_path: Path) -> Iterator[tuple[Runtime, Session]]:
    url = f"sqlite:///{tmp_path / 'snapshot.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    rt = SnapshotRuntime(Settings(url, keyring_path), engine, load_keyring(keyring_path),
                         clock=lambda: FIXED_NOW)
    load_story(rt)
    yield rt, log_in(rt)
    engine.dispose()


def test_snapshot_anomalies_100x30(snap_compare: Any,
                                   snapshot_story: tuple[Runtime, Session]) -> None:
    rt, officer = snapshot_story

    async def show(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        await pilot.press(DESTINATIONS["anomalies"].key)
        await wait_loaded(pilot, AnomaliesScreen)
        await quiet(pilot)

    assert snap_compare(PolysecApp(rt, session=officer), terminal_size=(100, 30),
                        run_before=show)


def test_snapshot_timeline_100x30(snap_compare: Any,
                                  snapshot_story: tuple[Runtime, Session]) -> None:
    rt, officer = snapshot_story
    a1 = account_id(rt, "A1")

    async def show(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        await pilot.app.push_screen(TimelineScreen(a1))
        await wait_loaded(pilot, TimelineScreen)
        await quiet(pilot)

    assert snap_compare(PolysecApp(rt, session=officer), terminal_size=(100, 30),
                        run_before=show)


def test_bindings_have_ids_and_descriptions() -> None:
    from textual.binding import Binding

    for owner in (AnomaliesScreen, TimelineScreen):
        for binding in owner.BINDINGS:
            assert isinstance(binding, Binding)
            assert binding.id and binding.description, binding
