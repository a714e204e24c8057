"""distributed_attack: credential stuffing through a residential proxy pool, one attempt
per address, found from the platform's failed logins hour by hour; the same findings
whether the logins arrive in increments or are judged in one full run. All three
databases."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from polysec_tui.db.models import LoginAnomaly, LoginEvent
from polysec_tui.services.logins import anomalies
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest_records, login
from tests.support.screening import CRON

TOOL = "python-requests/2.31"
HOUR = FIXED_NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def _at(minutes: float) -> str:
    return (HOUR + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _records() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    accounts = [account(f"C{i}") for i in range(90)]
    logins: list[dict[str, object]] = []
    for i in range(90):  # ordinary history: each client at home, a week of days
        logins += [login(f"C{i}-h{d}", f"C{i}", ip=f"10.9.{i}.1", at=_at(-60 * 24 * d - i))
                   for d in range(1, 4)]
    for i in range(120):  # the campaign's hour: each attempt from its own home address
        logins.append(login(f"atk-{i}", f"C{i % 90}", success=False, at=_at(i * 0.45),
                            ip=f"100.{64 + i // 200}.{i % 200}.{7 + i % 3}",
                            asn=64500 + i % 60, user_agent=TOOL))
    logins += [
        # A stolen password that worked, from an address new to the account.
        login("stolen", "C5", at=_at(30), ip="100.99.1.1", asn=64555, user_agent=TOOL),
        # The client's own typo in that hour, from their browser: not the campaign's.
        login("typo", "C7", at=_at(31), success=False, ip="10.9.7.1"),
        # A client logging in as usual with the same tool, from home: known address.
        login("own", "C8", at=_at(32), ip="10.9.8.1", user_agent=TOOL),
        # Something to close the hour (its end plus the lateness).
        login("later", "C9", at=_at(75), ip="10.9.9.1"),
    ]
    return accounts, logins


def _found(runtime) -> dict[str, str]:
    with runtime.sessions() as s:
        return {ext: severity for ext, severity in s.execute(
            select(LoginEvent.external_id, LoginAnomaly.severity)
            .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
            .where(LoginAnomaly.kind == "distributed_attack"))}


def test_a_campaign_spread_over_many_addresses_is_found(runtime):
    accounts, logins = _records()
    ingest_records(runtime, "accounts", accounts)
    ingest_records(runtime, "logins", logins)
    anomalies.analyze(runtime, CRON)
    found = _found(runtime)
    assert {ext for ext in found if ext.startswith("atk-")} == {f"atk-{i}" for i in range(120)}
    assert found["stolen"] == "critical"
    assert "typo" not in found and "own" not in found
    assert set(found.values()) == {"medium", "critical"}
    with runtime.sessions() as s:
        (text,) = s.scalars(select(LoginAnomaly.explanation).join(
            LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
            .where(LoginEvent.external_id == "stolen"))
    assert "121 failed logins" in text and "on 90 accounts" in text
    assert "120 of them from 120 addresses that tried at most 5 times each" in text
    # Per source, nothing: no address sent enough for credential_stuffing or spraying.
    kinds = {k for k in anomalies.KINDS if k != "distributed_attack"}
    with runtime.sessions() as s:
        assert not set(s.scalars(select(LoginAnomaly.kind)
                                 .where(LoginAnomaly.kind.in_(kinds)))) & {
            "credential_stuffing", "password_spraying"}


def test_increments_and_a_full_run_find_the_same(runtime):
    accounts, logins = _records()
    ingest_records(runtime, "accounts", accounts)
    third = len(logins) // 3
    for start in (0, third, 2 * third):  # the watcher's passes, in time order
        ingest_records(runtime, "logins", logins[start:start + third]
                       if start < 2 * third else logins[start:])
        anomalies.analyze(runtime, CRON)
    incremental = _found(runtime)
    anomalies.analyze(runtime, CRON, full=True)
    assert _found(runtime) == incremental and incremental["stolen"] == "critical"


def test_an_ordinary_hour_is_not_a_campaign(runtime):
    accounts, logins = _records()
    ingest_records(runtime, "accounts", accounts)
    # Sixty attempts: under the hour's minimum of 100.
    ingest_records(runtime, "logins", [x for x in logins
                                       if not str(x["id"]).startswith("atk-")
                                       or int(str(x["id"])[4:]) < 60])
    anomalies.analyze(runtime, CRON)
    assert _found(runtime) == {}


def test_small_passes_late_and_future_logins_find_the_same(runtime):
    """The watcher's passes of a few logins each; a login dated a day ahead (a feed's
    clock) closes no hour; failures delivered an hour late have their hour judged
    again. Whatever the order, increments find what a full run finds."""
    accounts, logins = _records()
    ingest_records(runtime, "accounts", accounts)
    history = [x for x in logins if "-h" in str(x["id"])]
    ingest_records(runtime, "logins", history)
    anomalies.analyze(runtime, CRON)
    attempts = [x for x in logins if "-h" not in str(x["id"])]
    on_time, late = attempts[:100], attempts[100:]
    ahead = login("skewed", "C3", at=(FIXED_NOW + timedelta(hours=20)).isoformat()
                  .replace("+00:00", "Z"), ip="10.9.3.1")
    for start in range(0, len(on_time), 7):
        ingest_records(runtime, "logins", on_time[start:start + 7])
        anomalies.analyze(runtime, CRON)
        if start == 14:
            ingest_records(runtime, "logins", [ahead])
            anomalies.analyze(runtime, CRON)
    ingest_records(runtime, "logins", late)
    anomalies.analyze(runtime, CRON)
    incremental = _found(runtime)
    assert incremental["stolen"] == "critical" and len(incremental) > 100
    anomalies.analyze(runtime, CRON, full=True)
    assert _found(runtime) == incremental


def test_an_outage_is_not_a_campaign(runtime):
    """Everyone fails once from home (an outage, a TOTP clock drift), then logs in:
    every address is one its account used, so nothing is tagged."""
    accounts, logins = _records()
    ingest_records(runtime, "accounts", accounts)
    history = [x for x in logins if "-h" in str(x["id"])]
    outage = [login(f"out-{i}", f"C{i % 90}", success=False, at=_at(i * 0.45),
                    ip=f"10.9.{i % 90}.1", user_agent=TOOL) for i in range(120)]
    back = [login(f"back-{i}", f"C{i}", at=_at(40 + i * 0.1), ip=f"10.9.{i}.2",
                  user_agent=TOOL) for i in range(90)]  # a new address on their network
    ingest_records(runtime, "logins", [*history, *outage, *back,
                                       login("later", "C9", at=_at(75), ip="10.9.9.1")])
    anomalies.analyze(runtime, CRON)
    assert _found(runtime) == {}


def test_a_campaign_that_rotates_user_agents_is_seen_by_its_addresses(runtime):
    """Without a shared user agent the campaign's successes are the ones from its own
    addresses (one that failed on another account that hour), from a network new to
    the account; a client's typo and success from a new network of their own is not."""
    accounts, logins = _records()
    rotated = []
    for x in logins:
        ext = str(x["id"])
        if ext.startswith("atk-"):
            x = {**x, "user_agent": f"Mozilla/5.0 (rotated {ext})"}
        if ext == "stolen":  # from the address atk-3 failed on C3 from
            x = {**x, "ip": "100.64.3.7", "asn": 64503, "user_agent": "Mozilla/5.0 (x)",
                 "device_id": "dev-bot"}
        rotated.append(x)
    rotated += [
        login("mine-typo", "C20", success=False, at=_at(40), ip="100.98.1.1", asn=64998),
        login("mine", "C20", at=_at(40.5), ip="100.98.1.1", asn=64998),
        # A subscriber of a carrier whose shared address the campaign also used (atk-4's),
        # on mobile data for the first time, with the phone it always logs in with.
        login("neighbour", "C21", at=_at(41), ip="100.64.4.8", asn=64504, device_id="dev-1"),
    ]
    ingest_records(runtime, "accounts", accounts)
    ingest_records(runtime, "logins", rotated)
    anomalies.analyze(runtime, CRON)
    found = _found(runtime)
    assert found["stolen"] == "critical" and found["atk-3"] == "medium"
    assert "mine" not in found and "neighbour" not in found
    with runtime.sessions() as s:
        (text,) = s.scalars(select(LoginAnomaly.explanation).join(
            LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
            .where(LoginEvent.external_id == "stolen"))
    assert "from an address that failed on other accounts in the campaign's hour" in text
    incremental = found
    anomalies.analyze(runtime, CRON, full=True)
    assert _found(runtime) == incremental


def _straddling(start_minute: float) -> list[dict[str, object]]:
    """The campaign's 120 attempts over 54 minutes, starting ``start_minute`` into the
    hour, and a login ten minutes after them that completes their sliding hour."""
    _accounts, logins = _records()
    moved = []
    for x in logins:
        ext = str(x["id"])
        if ext.startswith("atk-"):
            x = {**x, "at": _at(start_minute + int(ext[4:]) * 0.45)}
        elif ext in ("stolen", "typo", "own"):
            x = {**x, "at": _at(start_minute + 30)}
        if ext != "later":
            moved.append(x)
    return moved


def test_a_campaign_across_the_clock_hour_is_one_hour(runtime):
    """120 attempts from :35 to :29 are 60 in each clock hour, each under the minimum of
    100: judged over hours starting every 10 minutes, they are one hour's campaign, and
    it is found 10 minutes after that hour ends, before the clock hour would be."""
    accounts, _logins = _records()
    ingest_records(runtime, "accounts", accounts)
    ingest_records(runtime, "logins", _straddling(35))
    anomalies.analyze(runtime, CRON)
    assert _found(runtime) == {}  # the sliding hour is not complete yet
    # The hour from :30 to :30 is complete at :40 past (its end plus the lateness); this
    # login at 1:55 is before the second clock hour would be (2:10).
    ingest_records(runtime, "logins", [login("closes", "C9", at=_at(35 + 54 + 26),
                                             ip="10.9.9.1")])
    anomalies.analyze(runtime, CRON)
    found = _found(runtime)
    assert {ext for ext in found if ext.startswith("atk-")} == {f"atk-{i}" for i in range(120)}
    assert found["stolen"] == "critical" and "typo" not in found and "own" not in found
    with runtime.sessions() as s:
        (text,) = s.scalars(select(LoginAnomaly.explanation).join(
            LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
            .where(LoginEvent.external_id == "stolen"))
    began = HOUR + timedelta(minutes=30)
    assert (f"121 failed logins between {began:%Y-%m-%d %H:%M} and "
            f"{began + timedelta(hours=1):%H:%M} UTC") in text
    incremental = found
    anomalies.analyze(runtime, CRON, full=True)
    assert _found(runtime) == incremental


def test_the_checkpoint_survives_migration_0028_both_ways(runtime):
    """0028 turns the next clock hour to judge into the first sliding hour that straddles
    the start of the last clock hour judged (never judged: the campaign of :35 to :29
    ending before the upgrade is found after it), and back into that last clock hour:
    an hour judged once more (findings are unique), none skipped."""
    from polysec_tui.db import migrate
    from polysec_tui.db.models import AnalysisCheckpoint
    from polysec_tui.services.logins import campaigns

    clock_hour = 493_000  # 2026-03-29 16:00 UTC
    migrate.downgrade(runtime.engine, "0027")
    with runtime.engine.begin() as conn:
        conn.execute(insert(AnalysisCheckpoint).values(
            name="campaigns", login_id=clock_hour, security_event_id=0, runs=0))
    migrate.upgrade(runtime.engine)
    with runtime.sessions() as s:
        slot = s.get(AnalysisCheckpoint, "campaigns").login_id
    assert campaigns._start(slot) == (campaigns.EPOCH + (clock_hour - 2) * campaigns.HOUR
                                      + campaigns.SLOT)
    migrate.downgrade(runtime.engine, "0027")
    with runtime.engine.connect() as conn:
        assert conn.scalar(select(AnalysisCheckpoint.login_id).where(
            AnalysisCheckpoint.name == "campaigns")) == clock_hour - 1
    migrate.upgrade(runtime.engine)


@pytest.mark.parametrize("seed", range(3))
def test_shuffled_small_passes_find_what_a_full_run_finds(runtime, seed):
    """The straddling campaign delivered in passes of 1 to 12 logins, partly out of
    order (failures and successes late), with a login dated 20 hours ahead."""
    accounts, _logins = _records()
    ingest_records(runtime, "accounts", accounts)
    logins = _straddling(35)
    history = [x for x in logins if "-h" in str(x["id"])]
    rest = sorted((x for x in logins if "-h" not in str(x["id"])), key=lambda x: str(x["at"]))
    rest += [login("closes", "C9", at=_at(35 + 54 + 30), ip="10.9.9.1"),
             login("skewed", "C3", at=(FIXED_NOW + timedelta(hours=20)).isoformat()
                   .replace("+00:00", "Z"), ip="10.9.3.1")]
    rng = random.Random(seed)
    for _ in range(30):
        i, j = rng.randrange(len(rest)), rng.randrange(len(rest))
        rest[i], rest[j] = rest[j], rest[i]
    ingest_records(runtime, "logins", history)
    anomalies.analyze(runtime, CRON)
    while rest:
        n = rng.randint(1, 12)
        ingest_records(runtime, "logins", rest[:n])
        anomalies.analyze(runtime, CRON)
        rest = rest[n:]
    incremental = _found(runtime)
    assert len([ext for ext in incremental if ext.startswith("atk-")]) == 120
    assert incremental["stolen"] == "critical"
    anomalies.analyze(runtime, CRON, full=True)
    assert _found(runtime) == incremental


def test_a_platform_without_a_day_of_logins_has_no_usual_hour(runtime):
    """A new deployment's first logins: every address is new to its account and the
    platform's usual hour is unknown, so its first day is not judged (the per-source
    detectors still are). Then a day of ordinary history, and the same hour is."""
    accounts, logins = _records()
    ingest_records(runtime, "accounts", accounts)
    ingest_records(runtime, "logins", [x for x in logins if "-h" not in str(x["id"])])
    anomalies.analyze(runtime, CRON, full=True)
    assert _found(runtime) == {}
    ingest_records(runtime, "logins", [x for x in logins if "-h" in str(x["id"])])
    anomalies.analyze(runtime, CRON, full=True)
    assert len(_found(runtime)) == 121
