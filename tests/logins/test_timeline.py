"""The account timeline: every source merged in time order, anomalies on their logins,
lookup by e-mail, PII masked, permissions."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.clients import accounts
from polysec_tui.services.logins import anomalies, timeline
from polysec_tui.services.officers.auth import Actor
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest, ingest_records, login, security_event, withdrawal

ANN = Actor(uuid.UUID(int=2), "ann", "analyst")
SUE = Actor(uuid.UUID(int=3), "sue", "senior")
CRON = Actor(uuid.UUID(int=1), "cron", "automation")


def when(minutes: int) -> str:
    return (FIXED_NOW - timedelta(hours=3) + timedelta(minutes=minutes)).isoformat().replace(
        "+00:00", "Z")


def test_timeline_merges_every_source_in_order(runtime):
    ingest(runtime, "accounts", account("A1"), account("B2"))
    ingest_records(runtime, "logins", [
        *[login(f"f{i}", "A1", at=when(i), success=False, ip="198.51.100.7",
                user_agent="\x1b[31mevil\x1b[0m") for i in range(5)],
        login("ok", "A1", at=when(10)),
        login("other", "B2", at=when(11)),
    ])
    ingest(runtime, "security-events", security_event("s1", "A1", at=when(12),
                                                      kind="2fa_change"))
    ingest(runtime, "withdrawals", withdrawal("w1", "A1", at=when(20)))
    anomalies.analyze(runtime, CRON)
    accounts.reveal(runtime, SUE, "A1", "phone", "caller verification")  # audited on A1

    view = timeline.account_timeline(runtime, ANN, "A1.DOE@example.com")  # email, any case
    assert view.account == "A1" and view.email == "a***@e***.com"
    types = [(e.type, e.ref) for e in view.events]
    assert types == [*[("login_failed", f"f{i}") for i in range(5)], ("login", "ok"),
                     ("security_event", "s1"), ("withdrawal", "w1"),
                     ("officer_action", types[-1][1])]
    assert [e.at for e in view.events] == sorted(e.at for e in view.events)
    brute = [a for e in view.events for a in e.anomalies if a["kind"] == "brute_force"]
    assert len(brute) == 5
    ok = next(e for e in view.events if e.ref == "ok")
    assert [a["kind"] for a in ok.anomalies] == ["success_after_failures"]
    action = view.events[-1]
    assert action.details["action"] == "pii.reveal" and action.details["officer"] == "sue"
    doc = view.as_dict()
    text = repr(doc)
    for secret in ("a1.doe@example.com", "+49 170 1234512", "Jane A1 Doe", "1985-04-12"):
        assert secret not in text  # no PII (the revealed phone is not in the log either)
    assert view.events[0].details["user_agent"] == "\x1b[31mevil\x1b[0m"  # data, verbatim


def test_timeline_limit_and_refusals(runtime):
    ingest(runtime, "accounts", account("A1"))
    ingest_records(runtime, "logins", [login(f"l{i}", "A1", at=when(i)) for i in range(30)])
    view = timeline.account_timeline(runtime, ANN, "A1", limit=10)
    assert view.truncated and [e.ref for e in view.events] == [f"l{i}" for i in range(20, 30)]
    with pytest.raises(RefusedError):
        timeline.account_timeline(runtime, CRON, "A1")
    with pytest.raises(InputError):
        timeline.account_timeline(runtime, ANN, "nobody@example.com")


def test_logins_per_day_counts_each_utc_day(runtime):
    ingest(runtime, "accounts", account("A1"), account("B2"))
    day = timedelta(days=1)
    ingest_records(runtime, "logins", [
        login("old", "A1", at=(FIXED_NOW - 40 * day).isoformat()),  # before the window
        login("d2-ok", "A1", at=(FIXED_NOW - 2 * day).isoformat()),
        login("d2-late", "A1", at=(FIXED_NOW - 2 * day).replace(hour=23, minute=59,
                                                                 second=59).isoformat()),
        login("d1-fail", "A1", at=(FIXED_NOW - day).replace(hour=0, minute=0).isoformat(),
              success=False),
        login("today-ok", "A1", at=(FIXED_NOW - timedelta(hours=1)).isoformat()),
        login("today-fail", "A1", at=(FIXED_NOW - timedelta(hours=2)).isoformat(),
              success=False),
        login("other", "B2", at=(FIXED_NOW - timedelta(hours=1)).isoformat()),
    ])
    account_id = accounts.summary(runtime, ANN, "A1").id
    days = timeline.logins_per_day(runtime, ANN, account_id, days=30)
    assert len(days) == 30 and days[-1].day == FIXED_NOW.date()
    assert days[0].day == FIXED_NOW.date() - 29 * day
    counts = {d.day: (d.succeeded, d.failed) for d in days if d.succeeded or d.failed}
    assert counts == {(FIXED_NOW - 2 * day).date(): (2, 0),
                      (FIXED_NOW - day).date(): (0, 1),
                      FIXED_NOW.date(): (1, 1)}
    assert timeline.logins_per_day(runtime, ANN, "A1", days=3) == days[-3:]  # by id too
    with pytest.raises(RefusedError):
        timeline.logins_per_day(runtime, CRON, account_id)
    with pytest.raises(InputError):
        timeline.logins_per_day(runtime, ANN, uuid.uuid4())


def test_located_logins_mark_impossible_travel(runtime):
    ingest(runtime, "accounts", account("A1"))
    history = [login(f"home{i}", "A1", at=when(i * 10)) for i in range(6)]
    ingest_records(runtime, "logins", [
        *history,
        login("fail", "A1", at=when(65), success=False, lat=10.0, lon=10.0),
        login("nowhere", "A1", at=when(70), lat=None, lon=None),
        login("nyc", "A1", at=when(120), ip="192.0.2.99", asn=7922, country="US",
              city="New York", lat=40.71, lon=-74.0),
    ])
    anomalies.analyze(runtime, CRON)
    located = timeline.located_logins(runtime, ANN, "A1")
    assert [p.login for p in located] == [*(f"home{i}" for i in range(6)), "nyc"]
    assert [p.impossible_travel for p in located] == [False] * 6 + [True]
    assert (located[-1].latitude, located[-1].longitude, located[-1].city) == (
        40.71, -74.0, "New York")
    assert [p.login for p in timeline.located_logins(runtime, ANN, "A1", limit=2)] == [
        "home5", "nyc"]
    with pytest.raises(RefusedError):
        timeline.located_logins(runtime, CRON, "A1")


def test_address_book_events_show_their_address(runtime):
    """An address saved to the address book is evidence an officer reads on the
    timeline: the event names it (screening counts it as history after a day)."""
    ingest(runtime, "accounts", account("A1"))
    ingest(runtime, "security-events", security_event(
        "s1", "A1", at=when(12), kind="address_added", address="bc1qsavedwallet",
        ip="203.0.113.7"))
    (event,) = timeline.account_timeline(runtime, ANN, "A1").events
    assert event.summary == "address_added bc1qsavedwallet from 203.0.113.7"
    assert event.details["address"] == "bc1qsavedwallet"
