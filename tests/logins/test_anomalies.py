"""Login anomaly detectors (each fires and does not fire), incremental analysis, the
checkpoint, permissions and audit, and the RBA CSV feed end to end."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import (
    AnalysisCheckpoint,
    AuditLogEntry,
    LoginAnomaly,
    LoginEvent,
    LoginFeatureCount,
    LoginHistory,
)
from polysec_tui.errors import RefusedError
from polysec_tui.services.logins import anomalies, rules
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.cli import run_cli
from tests.support.helpers import account, ingest, ingest_records, login, security_event
from tests.support.officers import MovableClock, make_staff

CRON = Actor(uuid.UUID(int=1), "cron", "automation")
ANN = Actor(uuid.UUID(int=2), "ann", "analyst")
T0 = FIXED_NOW - timedelta(days=2)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def found(rt: Runtime, kind: str | None = None) -> list[tuple[str, str, str]]:
    """(kind, login external id, account external id) of the stored anomalies."""
    views = anomalies.list_anomalies(rt, ANN, kind=kind, limit=100_000)
    return sorted((v.kind, v.login, v.account) for v in views)


def kinds(rt: Runtime) -> set[str]:
    return {k for k, _l, _a in found(rt)}


def history(acct: str, n: int, **extra: object) -> list[dict[str, object]]:
    """n ordinary successful logins of acct, one a day before T0."""
    return [login(f"{acct}-h{i}", acct, at=at(-1440 * (n - i)), browser="Firefox 120",
                  os="Windows 10", device_type="desktop", **extra) for i in range(n)]


# --------------------------------------------------------------------- brute force


def test_brute_force_fires_on_every_failure_of_the_burst(runtime):
    ingest(runtime, "accounts", account("A1"), account("A2"))
    ingest_records(runtime, "logins", [
        *[login(f"b{i}", "A1", at=at(i), success=False, ip="198.51.100.7") for i in range(6)],
        *[login(f"q{i}", "A2", at=at(i * 4), success=False) for i in range(4)],  # 4: below
    ])
    anomalies.analyze(runtime, CRON)
    hits = found(runtime, "brute_force")
    assert [h[1] for h in hits] == [f"b{i}" for i in range(6)]
    view = anomalies.list_anomalies(runtime, ANN, kind="brute_force")[0]
    assert "6 failed logins" in view.explanation and "threshold 5" in view.explanation
    assert view.details["failures"] == 6 and view.severity == "medium"
    # Each says which attempt it was: the first is not "6 failed logins" on its own.
    by_login = {v.login: v for v in anomalies.list_anomalies(runtime, ANN, kind="brute_force")}
    assert by_login["b0"].explanation.startswith("1st of 5 failed logins")
    assert by_login["b4"].explanation.startswith("5th of 5 failed logins")
    assert by_login["b5"].explanation.startswith("6th of 6 failed logins")
    assert [by_login[f"b{i}"].details["attempt"] for i in range(6)] == [1, 2, 3, 4, 5, 6]


def test_failures_spread_beyond_the_window_are_not_brute_force(runtime):
    ingest(runtime, "accounts", account("A1"))
    ingest_records(runtime, "logins", [
        login(f"b{i}", "A1", at=at(i * 11), success=False) for i in range(8)])
    anomalies.analyze(runtime, CRON)
    assert "brute_force" not in kinds(runtime)


# ------------------------------------------------------- stuffing and spraying


def test_credential_stuffing_one_ip_many_accounts_fast(runtime):
    accts = [account(f"S{i:02d}") for i in range(20)]
    ingest_records(runtime, "accounts", accts)
    ingest_records(runtime, "logins", [
        login(f"s{i}", f"S{i:02d}", at=at(i * 0.25), success=i == 17, ip="192.0.2.66",
              asn=14061)
        for i in range(20)
    ])
    anomalies.analyze(runtime, CRON)
    hits = found(runtime, "credential_stuffing")
    assert len(hits) == 20  # every attempt of the burst, the success included
    views = {v.login: v for v in anomalies.list_anomalies(runtime, ANN,
                                                          kind="credential_stuffing")}
    assert views["s17"].severity == "critical" and "SUCCEEDED" in views["s17"].explanation
    assert "password_spraying" not in kinds(runtime)


def test_a_stuffing_burst_spares_the_networks_genuine_subscribers(runtime):
    """A carrier's shared address (CGNAT) carries a campaign and its own subscribers at
    once: an attempt from a device that had logged in successfully from that network
    before is the client's, the rest of the burst is the campaign's."""
    cgnat, carrier = "100.64.7.9", 26615
    ingest_records(runtime, "accounts", [*(account(f"S{i:02d}") for i in range(20)),
                                         account("SUB"), account("NEWPHONE"),
                                         account("VICTIM")])
    ingest_records(runtime, "logins", [
        # Days before: SUB and NEWPHONE on the carrier, VICTIM at home.
        login("sub-h", "SUB", at=at(-2000), ip="100.64.1.1", asn=carrier, device_id="d-sub"),
        login("np-h", "NEWPHONE", at=at(-2000), ip="100.64.1.2", asn=carrier,
              device_id="d-old"),
        login("v-h", "VICTIM", at=at(-2000), device_id="d-victim"),
        *(login(f"s{i}", f"S{i:02d}", at=at(i * 0.25), success=False, ip=cgnat,
                asn=carrier, device_id=None) for i in range(20)),
        # During the burst, from the same address:
        login("sub-typo", "SUB", at=at(2), success=False, ip=cgnat, asn=carrier,
              device_id="d-sub"),
        login("sub-in", "SUB", at=at(2.5), ip=cgnat, asn=carrier, device_id="d-sub"),
        login("np-in", "NEWPHONE", at=at(3), ip=cgnat, asn=carrier, device_id="d-new"),
        # The campaign's success, with a device id copied from the victim: not from a
        # network the victim used.
        login("v-in", "VICTIM", at=at(3.5), ip=cgnat, asn=carrier, device_id="d-victim"),
        # An intruder's success flagged before (risky) vouches for nothing: their later
        # attempt from the same device and network is the campaign's.
        login("x-home", "S03", at=at(-620), device_id="d-s03"),
        login("x-prev", "S03", at=at(-600), ip="100.64.9.9", asn=carrier, device_id="d-x",
              country="BR", city="Recife", lat=-8.05, lon=-34.9),  # impossible travel
        login("x-in", "S03", at=at(3.7), ip=cgnat, asn=carrier, device_id="d-x"),
    ])
    report = anomalies.analyze(runtime, CRON)
    hits = {login_ext for _k, login_ext, _a in found(runtime, "credential_stuffing")}
    # The subscriber's typo is dropped; their success is kept, low (a device id can be
    # copied: the victim's below is), so it alerts nobody and weighs nothing.
    assert hits == {*(f"s{i}" for i in range(20)), "np-in", "v-in", "sub-in", "x-in"}
    assert report.subscribers == 2  # sub-typo, sub-in
    views = {v.login: v for v in anomalies.list_anomalies(runtime, ANN,
                                                          kind="credential_stuffing")}
    assert views["v-in"].severity == "critical" and views["np-in"].severity == "critical"
    assert views["sub-in"].severity == "low" and views["x-in"].severity == "critical"
    assert views["sub-in"].explanation.endswith(
        "likely one of the network's own subscribers (low: a device id can be copied)")
    before = found(runtime)
    anomalies.analyze(runtime, CRON, full=True)
    assert found(runtime) == before


def test_few_accounts_from_one_ip_is_not_stuffing(runtime):
    ingest_records(runtime, "accounts", [account(f"S{i:02d}") for i in range(10)])
    ingest_records(runtime, "logins", [
        login(f"s{i}", f"S{i:02d}", at=at(i * 0.25), success=False, ip="192.0.2.66")
        for i in range(10)])
    anomalies.analyze(runtime, CRON)
    assert kinds(runtime) == set()


def test_password_spraying_slow_one_attempt_per_account(runtime):
    ingest_records(runtime, "accounts", [account(f"P{i:02d}") for i in range(25)])
    ingest_records(runtime, "logins", [
        login(f"p{i}", f"P{i:02d}", at=at(i * 25), success=False, ip="192.0.2.99", asn=16276)
        for i in range(25)])
    anomalies.analyze(runtime, CRON)
    assert len(found(runtime, "password_spraying")) == 25
    assert "credential_stuffing" not in kinds(runtime)


# ------------------------------------------------------------- impossible travel


def test_impossible_travel_fires_above_900_kmh(runtime):
    ingest(runtime, "accounts", account("A1"))
    ingest_records(runtime, "logins", [
        login("t1", "A1", at=at(0)),
        login("t2", "A1", at=at(60), country="US", city="New York", lat=40.71, lon=-74.0,
              ip="198.51.100.20", asn=7922),
    ])
    anomalies.analyze(runtime, CRON)
    view = anomalies.list_anomalies(runtime, ANN, kind="impossible_travel")[0]
    assert view.login == "t2" and view.details["km"] > 6000 and view.details["kmh"] > 6000
    assert "km/h" in view.explanation and "New York" not in view.explanation


def test_travel_slow_enough_or_short_is_not_impossible(runtime):
    ingest(runtime, "accounts", account("A1"), account("A2"))
    ingest_records(runtime, "logins", [
        login("t1", "A1", at=at(0)),
        login("t2", "A1", at=at(12 * 60), country="US", city="New York", lat=40.71,
              lon=-74.0),  # 6,385 km in 12 h: 532 km/h
        login("u1", "A2", at=at(0)),
        login("u2", "A2", at=at(1), city="Potsdam", lat=52.39, lon=13.06),  # 27 km
    ])
    anomalies.analyze(runtime, CRON)
    assert "impossible_travel" not in kinds(runtime)


# ---------------------------------------------------------- new device/country/asn


def test_new_device_country_and_asn_after_enough_history(runtime):
    ingest(runtime, "accounts", account("A1"), account("A2"))
    new = {"device_id": "dev-new", "country": "FR", "asn": 12322, "city": "Paris",
           "lat": 48.86, "lon": 2.35, "ip": "198.51.100.50"}
    ingest_records(runtime, "logins", [
        *history("A1", 5), login("n1", "A1", at=at(0), **new),
        *history("A2", 3), login("n2", "A2", at=at(0), **new),  # too little history
    ])
    anomalies.analyze(runtime, CRON)
    hits = found(runtime)
    for kind in ("new_device", "new_country", "new_asn"):
        assert (kind, "n1", "A1") in hits
        assert not [h for h in hits if h[0] == kind and h[2] == "A2"]
    country = anomalies.list_anomalies(runtime, ANN, kind="new_country")[0]
    assert "FR" in country.explanation and "5 previous" in country.explanation


# ---------------------------------------------------------- success after failures


def test_success_after_failures_unless_a_password_reset_came_between(runtime):
    ingest(runtime, "accounts", account("A1"), account("A2"))
    ingest_records(runtime, "logins", [
        *[login(f"f{i}", "A1", at=at(i * 3), success=False) for i in range(5)],
        login("ok1", "A1", at=at(20)),
        *[login(f"g{i}", "A2", at=at(i * 3), success=False) for i in range(5)],
        login("ok2", "A2", at=at(20)),
    ])
    ingest(runtime, "security-events", security_event("r2", "A2", at=at(18),
                                                      kind="password_reset"))
    anomalies.analyze(runtime, CRON)
    hits = found(runtime, "success_after_failures")
    assert hits == [("success_after_failures", "ok1", "A1")]


# ------------------------------------------------------------ forgotten password


def _forgetful_client(rt: Runtime) -> None:
    """A1 logs in from its phone (dev-1) every day; then five failures from it, a reset
    from it three minutes after the last, and back in. A2: the same failures from an
    intruder's laptop, then the real client resets from their own phone. A3: 20 failures
    from the client's own device (a high burst: no forgetful client types that many)."""
    ingest_records(rt, "logins", [
        *history("A1", 6), *history("A2", 6), *history("A3", 6),
        *[login(f"f{i}", "A1", at=at(i), success=False) for i in range(5)],
        login("ok1", "A1", at=at(9)),
        *[login(f"g{i}", "A2", at=at(i), success=False, device_id="intruder",
                ip="198.51.100.66") for i in range(5)],
        *[login(f"h{i}", "A3", at=at(i / 2), success=False) for i in range(20)],
    ])


def _resets(rt: Runtime) -> None:
    ingest(rt, "security-events", *(
        security_event(f"r-{acct}", acct, at=at(7), kind="password_reset",
                       ip="203.0.113.7", device_id="dev-1") for acct in ("A1", "A2", "A3")))


@pytest.mark.parametrize("order", ["together", "reset first", "reset later"])
def test_a_burst_the_client_closes_with_a_reset_from_their_device_is_forgotten(runtime,
                                                                              order):
    ingest(runtime, "accounts", account("A1"), account("A2"), account("A3"))
    if order == "reset first":
        _resets(runtime)
    _forgetful_client(runtime)
    if order == "together":
        _resets(runtime)
    anomalies.analyze(runtime, CRON)
    if order == "reset later":
        assert {h[1] for h in found(runtime, "brute_force")} >= {"f0", "f4"}
        _resets(runtime)
        report = anomalies.analyze(runtime, CRON)
        assert (report.new_anomalies, report.reclassified) == ({}, 5)
    assert [h[1] for h in found(runtime, "forgotten_password")] == [f"f{i}" for i in range(5)]
    assert {h[2] for h in found(runtime, "brute_force")} == {"A2", "A3"}
    [view] = [v for v in anomalies.list_anomalies(runtime, ANN, kind="forgotten_password")
              if v.login == "f4"]
    assert view.severity == "low"
    assert view.explanation == (
        "5th of 5 failed logins on this account within 4 min (threshold 5 in 10 min) from 1 "
        "IP address(es); then a password reset 3 min later from the client's own device and "
        "network: a forgotten password, not a brute force")
    # A full run, and a later replay of the same burst, keep it forgotten.
    anomalies.analyze(runtime, CRON, full=True)
    assert len(found(runtime, "forgotten_password")) == 5
    assert {h[2] for h in found(runtime, "brute_force")} == {"A2", "A3"}


# The watcher, fed in steps, ends where a full run over the same data ends; an intruder
# cannot make a brute force look forgotten.


def _kinds(rt: Runtime) -> list[tuple[str, str, str]]:
    return sorted((v.kind, v.login, v.severity) for v in
                  anomalies.list_anomalies(rt, ANN, limit=100_000)
                  if v.kind in ("brute_force", "forgotten_password"))


def _watched_then_full(rt: Runtime, *steps: Any) -> list[tuple[str, str, str]]:
    """The findings after the watcher's passes, one per step; asserted equal to those
    of a full run afterwards."""
    windows = anomalies.WindowState(lateness=timedelta(hours=2))
    for step in steps:
        step()
        anomalies.analyze_new(rt, windows, 100_000)
    watched = _kinds(rt)
    anomalies.analyze(rt, CRON, full=True)
    assert _kinds(rt) == watched
    return watched


def _reset(minute: float, device: str = "dev-1", ip: str = "203.0.113.7") -> dict[str, Any]:
    return security_event(f"r{minute}", "A1", at=at(minute), kind="password_reset", ip=ip,
                          device_id=device)


def _fails(prefix: str, minutes: Any, **kw: Any) -> list[dict[str, Any]]:
    return [login(f"{prefix}{i}", "A1", at=at(m), success=False, **kw)
            for i, m in enumerate(minutes)]


def _client_forgets(rt: Runtime, device: str = "dev-1") -> None:
    ingest(rt, "accounts", account("A1"))
    ingest_records(rt, "logins", [*history("A1", 6), *_fails("f", range(5), device_id=device)])
    ingest(rt, "security-events", _reset(7, device=device))


def test_forgotten_a_burst_that_goes_on_after_the_reset_is_brute_force_again(runtime):
    found = _watched_then_full(
        runtime, lambda: _client_forgets(runtime),
        lambda: ingest_records(runtime, "logins",
                               _fails("g", [4.2 + 0.2 * i for i in range(15)])))
    assert {kind for kind, _l, _s in found} == {"brute_force"} and len(found) == 20


def test_forgotten_a_late_success_that_makes_the_device_known_counts(runtime):
    found = _watched_then_full(
        runtime, lambda: _client_forgets(runtime, device="dev-9"),
        lambda: ingest_records(runtime, "logins",
                               [login("late-ok", "A1", at=at(-30), device_id="dev-9")]))
    assert {kind for kind, _l, _s in found} == {"forgotten_password"} and len(found) == 5


def test_forgotten_a_reset_before_the_failures_closes_nothing(runtime):
    def reset_first() -> None:
        ingest(runtime, "accounts", account("A1"))
        ingest_records(runtime, "logins", history("A1", 6))
        ingest(runtime, "security-events", _reset(0))

    found = _watched_then_full(
        runtime, reset_first,
        lambda: ingest_records(runtime, "logins", _fails("f", [1, 2, 3, 4, 5])))
    assert {kind for kind, _l, _s in found} == {"brute_force"}


def test_forgotten_an_intruders_burst_arriving_late_reopens_it(runtime):
    found = _watched_then_full(
        runtime, lambda: _client_forgets(runtime),
        lambda: ingest_records(runtime, "logins", _fails(
            "g", [-40, -39, -38, -37, -36], device_id="intruder", ip="198.51.100.66")))
    assert {kind for kind, _l, _s in found} == {"brute_force"} and len(found) == 10


def test_forgotten_a_copied_device_id_on_a_foreign_network_hides_nothing(runtime):
    ingest(runtime, "accounts", account("A1"))
    # 3 x 19 failures (each under the high severity) with the victim's device id, from a
    # foreign network, and a reset from there.
    minutes = [b * 15 + i * 0.5 for b in range(3) for i in range(19)]
    ingest_records(runtime, "logins", [*history("A1", 6), *_fails(
        "x", minutes, ip="198.51.100.99", country="RU", asn=64500)])
    ingest(runtime, "security-events", _reset(56, ip="198.51.100.99"))
    anomalies.analyze(runtime, CRON, full=True)
    assert {kind for kind, _l, _s in _kinds(runtime)} == {"brute_force"}
    # The same few failures from the client's own network: forgotten.
    ingest_records(runtime, "logins", _fails("y", [600, 601, 602, 603, 604]))
    ingest(runtime, "security-events", _reset(606))
    anomalies.analyze(runtime, CRON)
    assert [login for kind, login, _s in _kinds(runtime) if kind == "forgotten_password"] == [
        f"y{i}" for i in range(5)]


def test_forgotten_an_attack_that_goes_on_after_the_reset_hides_nothing(runtime):
    ingest(runtime, "accounts", account("A1"))
    minutes = [i * 0.5 for i in range(19)] + [12 + i * 0.4 for i in range(20)]
    ingest_records(runtime, "logins", [*history("A1", 6), *_fails("x", minutes)])
    ingest(runtime, "security-events", _reset(1))
    anomalies.analyze(runtime, CRON, full=True)
    assert {kind for kind, _l, _s in _kinds(runtime)} == {"brute_force"}


# ----------------------------------------------------------------- risky login


def test_risky_login_scores_unseen_values_and_not_the_usual_ones(runtime):
    ingest(runtime, "accounts", account("A1"), account("A2"))
    ingest_records(runtime, "logins", [
        *history("A1", 12), *history("A2", 12, ip="203.0.113.8"),
        login("usual", "A1", at=at(0), browser="Firefox 120", os="Windows 10",
              device_type="desktop"),
        login("odd", "A1", at=at(60), ip="192.0.2.200", asn=16509, country="SG",
              browser="HeadlessChrome 124", os="Linux", device_type="bot"),
    ])
    anomalies.analyze(runtime, CRON)
    risky = anomalies.list_anomalies(runtime, ANN, kind="risky_login")
    assert [v.login for v in risky] == ["odd"]
    assert risky[0].details["unseen"] == list(rules.RISK_FEATURES)
    assert risky[0].score >= rules.DEFAULTS.risk_log10_threshold


def test_what_an_intruder_shares_with_the_client_cancels_nothing(runtime):
    """Same browser, OS and device type as the client (a common setup), but a new
    network abroad and a new device: no familiar value subtracts from the evidence, and
    features that change together (IP, network, country) count once, by the strongest."""
    ingest(runtime, "accounts", account("A1"), account("A2"))
    ingest_records(runtime, "logins", [
        *history("A1", 12), *history("A2", 12, ip="203.0.113.8"),
        login("intruder", "A1", at=at(60), ip="192.0.2.200", asn=64600, country="NG",
              city="Lagos", lat=6.45, lon=3.39, device_id="intruder-phone",
              browser="Firefox 120", os="Windows 10", device_type="desktop"),
    ])
    anomalies.analyze(runtime, CRON)
    (risky,) = anomalies.list_anomalies(runtime, ANN, kind="risky_login")
    parts = risky.details["log10_ratio"]
    assert all(value >= 0 for value in parts.values())
    assert parts["browser"] == parts["os"] == parts["device_type"] == 0
    strongest = max(parts["ip"], parts["asn"], parts["country"]) + parts["device"]
    assert risky.score == pytest.approx(strongest, abs=0.002)
    assert risky.details["unseen"] == ["ip", "asn", "country", "device"]


def test_a_clients_new_phone_at_home_is_not_risky(runtime):
    """A new device with a new browser and OS, on the client's own network: one group
    of features changed, counted once, below the threshold; still a new_device."""
    ingest(runtime, "accounts", account("A1"))
    ingest_records(runtime, "logins", [
        *history("A1", 12),
        login("phone", "A1", at=at(60), device_id="new-phone", browser="Safari 17",
              os="iOS 17", device_type="mobile"),
    ])
    anomalies.analyze(runtime, CRON)
    assert anomalies.list_anomalies(runtime, ANN, kind="risky_login") == []
    assert [v.login for v in anomalies.list_anomalies(runtime, ANN, kind="new_device")] == [
        "phone"]


def test_leaving_out_the_device_id_hides_no_new_device(runtime):
    """An account that always sent a device id: a login without one counts as from a new
    device, in the incremental and the full run alike, at any threshold near its score."""
    ingest(runtime, "accounts", account("A1"))
    intruder = login("bare", "A1", at=at(60), ip="192.0.2.201")
    del intruder["device_id"]
    ingest_records(runtime, "logins", [*history("A1", 12), intruder])
    anything = dataclasses.replace(rules.DEFAULTS, risk_log10_threshold=0.0)
    anomalies.analyze(runtime, CRON, thresholds=anything)
    (risky,) = [v for v in anomalies.list_anomalies(runtime, ANN, kind="risky_login")
                if v.login == "bare"]
    assert "device (none sent)" in risky.details["unseen"]
    assert risky.details["log10_ratio"]["device"] > 1
    score = risky.score
    for threshold in (score - 0.0004, score + 0.0004):
        t = dataclasses.replace(rules.DEFAULTS, risk_log10_threshold=threshold)
        flagged = []
        for full in (False, True):
            with runtime.transaction() as s:  # judged again from scratch
                for table in (LoginAnomaly, LoginHistory, LoginFeatureCount):
                    s.execute(delete(table))
                s.execute(update(AnalysisCheckpoint).values(login_id=0, security_event_id=0))
            anomalies.analyze(runtime, CRON, full=full, thresholds=t)
            flagged.append(sorted(v.login for v in anomalies.list_anomalies(
                runtime, ANN, kind="risky_login")))
        assert flagged[0] == flagged[1]
        assert ("bare" in flagged[0]) == (threshold < score)


def test_the_back_off_weights_are_fitted_alike_by_increments_and_a_full_run(runtime,
                                                                              monkeypatch):
    """What fits each feature's alpha (logins by history length, those with a value new
    to the account) is counted by incremental runs as a full run counts it."""
    monkeypatch.setattr(rules, "ALPHA_MIN_LOGINS", 10)
    accts, records = varied_history(3)
    ingest_records(runtime, "accounts", [account(a) for a in accts])
    half = len(records) // 2
    ingest_records(runtime, "logins", records[:half])
    anomalies.analyze(runtime, CRON)
    ingest_records(runtime, "logins", records[half:])
    anomalies.analyze(runtime, CRON)

    def counted() -> dict[tuple[str, str], int]:
        with runtime.sessions() as s:
            return {(r.feature, r.value): r.count for r in s.scalars(
                select(LoginFeatureCount).where(LoginFeatureCount.feature.like("h:%")))}

    incremental = counted()
    anomalies.analyze(runtime, CRON, full=True)
    assert counted() == incremental
    by_history = {int(v): n for (f, v), n in incremental.items()
                  if f == "h:ip" and v != rules.NOVEL}
    alpha = rules.fit_alpha("ip", incremental[("h:ip", rules.NOVEL)], by_history)
    assert alpha is not None
    with runtime.sessions() as s:
        assert anomalies._Population(s).alpha("ip") == alpha


# ----------------------------------------------------------------- incremental


def test_incremental_runs_use_earlier_context_and_never_duplicate(runtime):
    ingest(runtime, "accounts", account("A1"))
    ingest_records(runtime, "logins", [
        *history("A1", 6),
        *[login(f"b{i}", "A1", at=at(i), success=False, ip="198.51.100.7") for i in range(3)]])
    first = anomalies.analyze(runtime, CRON)
    assert first.logins == 9 and kinds(runtime) == set()
    # the burst continues after the checkpoint: the earlier failures count (window)
    ingest_records(runtime, "logins", [
        login(f"b{i}", "A1", at=at(i), success=False, ip="198.51.100.7") for i in range(3, 6)])
    second = anomalies.analyze(runtime, CRON)
    assert second.logins == 3 and second.from_login_id == first.to_login_id
    assert [h[1] for h in found(runtime, "brute_force")] == [f"b{i}" for i in range(6)]
    # the profile kept growing: a known device after the checkpoint is not new
    ingest_records(runtime, "logins", [login("late", "A1", at=at(120))])
    assert anomalies.analyze(runtime, CRON).new_anomalies == {}
    again = anomalies.analyze(runtime, CRON)
    assert again.logins == 0 and again.new_anomalies == {}
    before = found(runtime)
    full = anomalies.analyze(runtime, CRON, full=True)
    assert full.logins == 13 and found(runtime) == before
    assert anomalies.checkpoint(runtime)["login_id"] == full.to_login_id


def test_incremental_equals_full_on_the_same_data(runtime):
    ingest_records(runtime, "accounts", [account(f"S{i:02d}") for i in range(20)])
    records = [login(f"s{i}", f"S{i:02d}", at=at(i * 0.25), success=False, ip="192.0.2.66")
               for i in range(20)]
    for start in range(0, 20, 7):  # three increments
        ingest_records(runtime, "logins", records[start : start + 7])
        anomalies.analyze(runtime, CRON)
    incremental = found(runtime)
    anomalies.analyze(runtime, CRON, full=True)
    assert found(runtime) == incremental and len(incremental) == 20


def near_thresholds(seed: int) -> tuple[list[str], list[dict[str, object]]]:
    """Logins whose failures sit just under and just over every window detector's
    threshold: accounts with 4 to 6 failures in 10 to 70 minutes, IPs failing on 13 to
    17 accounts in 8 to 12 minutes or 90 to 110 times a day, networks whose day is 75 to
    85 % failures, among ordinary traffic."""
    import random

    rnd = random.Random(seed)
    accts = [f"N{i:02d}" for i in range(60)]
    out: list[dict[str, object]] = []

    def add(minute: float, acct: str, ok: bool, ip: str, asn: int) -> None:
        out.append(login(f"n{len(out)}", acct, at=at(minute), success=ok, ip=ip, asn=asn))

    for i, a in enumerate(accts):  # ordinary days, an occasional typo
        for _ in range(8):
            add(rnd.uniform(-2880, 1440), a, rnd.random() > 0.05, f"203.0.113.{i}", 3320)
    for k in range(12):  # accounts around brute force and success after failures
        a, t0, fails = rnd.choice(accts), rnd.uniform(-2800, 1400), rnd.randint(4, 6)
        span = rnd.choice((9.5, 10.5, 55, 65))
        for j in range(fails):
            add(t0 + j * span / fails, a, False, f"198.51.100.{k}", 64500 + k)
        add(t0 + span + 1, a, True, f"198.51.100.{k}", 64500 + k)
    for k in range(6):  # IPs around stuffing
        t0, n, span = rnd.uniform(-2800, 1400), (13, 15, 16, 17, 14, 16)[k], (8, 12)[k % 2]
        for j, a in enumerate(rnd.sample(accts, n)):
            add(t0 + j * span / n, a, j % 9 == 8, f"192.0.2.{k}", 14061)
    for k in range(3):  # IPs around the daily volume
        t0, n = rnd.uniform(-2800, 0), rnd.randint(90, 110)
        for j in range(n):
            add(t0 + j * 14, rnd.choice(accts[:4]), False, f"192.0.3.{k}", 16509)
    for k in range(4):  # networks whose day is about 80 % failures, one try per account
        t0, share = rnd.uniform(-2800, 0), rnd.choice((0.75, 0.8, 0.85))
        for j, a in enumerate(rnd.sample(accts, 30)):
            add(t0 + j * 40, a, rnd.random() > share, f"100.{64 + k}.0.{j}", 9000 + k)
    return accts, out


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_windows_left_out_of_a_batch_run_could_not_have_fired(seed, runtime,
                                                                   monkeypatch):
    """A batch run feeds only the windows whose bucketed failures reach a threshold:
    on data around every threshold it finds exactly what feeding every window finds,
    for a full run and for incremental ones."""
    accts, records = near_thresholds(seed)
    ingest_records(runtime, "accounts", [account(a) for a in accts])
    records.sort(key=lambda r: str(r["at"]))
    for start in range(0, len(records), 150):
        ingest_records(runtime, "logins", records[start : start + 150])
        anomalies.analyze(runtime, CRON)
    incremental = found(runtime)
    anomalies.analyze(runtime, CRON, full=True)
    full = found(runtime)
    chosen: list[anomalies._Candidates] = []
    real = anomalies._window_candidates
    monkeypatch.setattr(anomalies, "_window_candidates",
                        lambda *args: chosen.append(real(*args)))  # None: feed them all
    anomalies.analyze(runtime, CRON, full=True)
    assert found(runtime) == full
    assert 0 < len(chosen[0].accounts) < len(accts)  # some left out, some fed
    window_kinds = {"brute_force", "success_after_failures", "credential_stuffing",
                    "password_spraying"}
    assert window_kinds <= {k for k, *_ in full}
    assert [f for f in incremental if f[0] in window_kinds] == [
        f for f in full if f[0] in window_kinds]


def varied_history(seed: int) -> tuple[list[str], list[dict[str, object]]]:
    """Clients with a few homes, devices and browsers each, travelling now and then,
    some logins without a place or a network: every profile detector has work."""
    import random

    rnd = random.Random(seed)
    places = [("DE", "Berlin", 52.52, 13.40, 3320), ("FR", "Paris", 48.86, 2.35, 3215),
              ("US", "New York", 40.71, -74.0, 7922), ("BR", "Sao Paulo", -23.55, -46.63,
                                                         28573), ("AU", "Sydney", -33.87,
                                                                  151.21, 1221)]
    accts = [f"V{i:02d}" for i in range(30)]
    out: list[dict[str, object]] = []
    for a in accts:
        home = rnd.choice(places)
        for k in range(rnd.randint(2, 30)):
            country, city, lat, lon, asn = rnd.choice(places) if rnd.random() < 0.15 else home
            located = rnd.random() > 0.1
            out.append(login(
                f"{a}-{k}", a, at=at(-4000 + rnd.uniform(0, 5000)),
                ip=f"198.18.{rnd.randint(0, 3)}.{rnd.randint(1, 9)}",
                asn=asn if rnd.random() > 0.05 else None, country=country,
                city=city if located else None, lat=lat if located else None,
                lon=lon if located else None, device_id=f"d{rnd.randint(0, 3)}",
                browser=rnd.choice(["Firefox 120", "Chrome 124"]), os="Linux",
                device_type=rnd.choice(["desktop", "mobile"]),
                success=rnd.random() > 0.05))
        # the usual device and place, but a rare address, browser and system: risky
        # without anything new_* would flag
        out.append(login(f"{a}-odd", a, at=at(1200), ip=f"198.19.0.{len(out) % 250}",
                         asn=home[4], country=home[0], city=home[1], lat=home[2],
                         lon=home[3], device_id="d0", browser=f"Opera {len(out) % 3}",
                         os="Haiku", device_type="tv"))
    return accts, out


@pytest.mark.parametrize("seed", [1, 2])
def test_a_full_run_judges_each_login_as_one_by_one_would(seed, runtime, monkeypatch):
    """The full run counts history column by column: its findings, profiles and
    population counts are those of judging every login in turn, in Python."""
    from polysec_tui.services.logins import columnar
    from polysec_tui.services.logins.columnar import _Prior

    monkeypatch.setattr(columnar, "PART", 50)  # fetched and judged in many pieces,
    monkeypatch.setattr(columnar, "BLOCK", 37)  # cut inside accounts
    monkeypatch.setattr(columnar, "WRITE_ACCOUNTS", 7)  # histories written in blocks
    monkeypatch.setattr(rules, "ALPHA_MIN_LOGINS", 10)  # the back-off weights fitted
    apart: list[object] = []
    if seed == 1:  # half the logins read by a second process

        class Counted(ProcessPoolExecutor):
            def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
                apart.append(args)
                return super().submit(fn, *args, **kwargs)

        monkeypatch.setattr(columnar, "READ_APART_FROM", 1)
        monkeypatch.setattr(columnar, "ProcessPoolExecutor", Counted)

    accts, records = varied_history(seed)
    ingest_records(runtime, "accounts", [account(a) for a in accts])
    ingest_records(runtime, "logins", records)
    # A low bar: the few accounts' odd logins are risky ones, so both ways score them.
    t = dataclasses.replace(rules.DEFAULTS, risk_log10_threshold=1.0)
    anomalies.analyze(runtime, CRON, full=True, thresholds=t)
    assert len(apart) == (seed == 1)
    profile_kinds = ("new_device", "new_country", "new_asn", "risky_login",
                     "impossible_travel")
    with runtime.sessions() as s:
        stored = sorted((r.kind, r.login_event_id, r.severity, r.score, r.explanation)
                        for r in s.scalars(select(LoginAnomaly))
                        if r.kind in profile_kinds)
        logins = [rules.Login(*row) for row in s.execute(
            select(LoginEvent.id, LoginEvent.account_id, LoginEvent.at, LoginEvent.ip,
                   LoginEvent.asn, LoginEvent.country, LoginEvent.city, LoginEvent.browser,
                   LoginEvent.os, LoginEvent.device_type, LoginEvent.device_id,
                   LoginEvent.latitude, LoginEvent.longitude)
            .where(LoginEvent.success.is_(True))
            .order_by(LoginEvent.account_id, LoginEvent.at, LoginEvent.id))]
        profiles_stored = _histories(s)
        population_stored = sorted((r.feature, r.value, r.count)
                                   for r in s.scalars(select(LoginFeatureCount)))
    population: dict[str, dict[str, int]] = {f: {} for f in rules.RISK_FEATURES}
    for one in logins:
        for feature, value in one.values().items():
            if feature in population:
                population[feature][value] = population[feature].get(value, 0) + 1
    alphas, novelty_rows = _fitted_alphas(logins)
    prior = _Prior(population, len(logins), alphas)
    assert set(prior.alphas) == set(rules.ALPHA_FEATURES)
    findings: dict[tuple[str, int], rules.Finding] = {}
    profiles: dict[uuid.UUID, rules.Profile] = {}
    seen: dict[tuple[str, str, str], tuple[int, datetime | int | str]] = {}
    for one in logins:
        profile = profiles.setdefault(one.account_id, rules.Profile())
        values = one.values()
        rules.check_login(one, values, profile, prior, t, findings)
        profile.add(one, values)
        for key in [*values.items(), (rules.TOTAL, "*")]:
            stored_key = (str(one.account_id), *key)
            when = one.at if key[0] == rules.TOTAL else int(one.at.timestamp())
            seen[stored_key] = (seen.get(stored_key, (0, when))[0] + 1, when)
    expected = sorted((f.kind, f.login_id, f.severity, f.score, f.explanation)
                      for f in findings.values())
    assert stored == expected
    assert {k for k, *_ in stored} == set(profile_kinds)
    seen.update({(str(acc), "last_located", "*"): (
        0, repr(None if p.last is None else rules.located_row(p.last)))
        for acc, p in profiles.items()})
    assert profiles_stored == sorted((*key, n, when) for key, (n, when) in seen.items())
    assert population_stored == sorted(
        [(rules.TOTAL, "*", len(logins))]
        + [(rules.DISTINCT, f, len(v)) for f, v in population.items()]
        + [(f, value, n) for f, v in population.items() for value, n in v.items()]
        + novelty_rows)


def _fitted_alphas(logins: list[rules.Login]) -> tuple[dict[str, float],
                                                       list[tuple[str, str, int]]]:
    """The back-off weights by hand: per feature, the alpha at which the logins with a
    history carry as many values new to their account as a Chinese-restaurant process
    expects (sum of alpha / (n + alpha), over each account's logins 1 to HISTORY_CAP),
    found by bisection within the band around the demo's fit; and the counts stored for
    it."""
    profiles: dict[uuid.UUID, rules.Profile] = {}
    seen: dict[str, list[tuple[int, bool]]] = {f: [] for f in rules.ALPHA_FEATURES}
    for one in logins:
        profile = profiles.setdefault(one.account_id, rules.Profile())
        values = one.values()
        for feature in rules.ALPHA_FEATURES:
            if feature in values and 1 <= profile.n <= rules.HISTORY_CAP:
                seen[feature].append((profile.n, not profile.count(feature, values[feature])))
        profile.add(one, values)
    alphas: dict[str, float] = {}
    rows: list[tuple[str, str, int]] = []
    for feature, obs in seen.items():
        default = rules.DEFAULT_ALPHAS[feature]  # within the band around the demo's fit
        low = max(rules.ALPHA_BOUNDS[0], default / rules.ALPHA_BAND)
        high = min(rules.ALPHA_BOUNDS[1], default * rules.ALPHA_BAND)
        novel = sum(new for _n, new in obs)
        key = rules.history_key(feature)
        rows.extend((key, str(n), c) for n, c in Counter(n for n, _new in obs).items())
        if novel:
            rows.append((key, rules.NOVEL, novel))
        if len(obs) < rules.ALPHA_MIN_LOGINS:
            continue
        if not novel:
            alphas[feature] = low
            continue
        lo, hi = low, high
        for _ in range(100):  # expected new values grow with alpha
            mid = (lo + hi) / 2
            if sum(mid / (n + mid) for n, _new in obs) < novel:
                lo = mid
            else:
                hi = mid
        alphas[feature] = round((lo + hi) / 2, 3)
    return alphas, rows


def test_increments_keep_the_history_a_full_run_builds(runtime):
    """Each account's stored history (counts, last seen, logins) after runs over four
    increments, arriving out of time order, is the one a full run builds from all."""
    accts, records = varied_history(3)
    ingest_records(runtime, "accounts", [account(a) for a in accts])
    for start in range(0, len(records), len(records) // 4 + 1):
        ingest_records(runtime, "logins", records[start : start + len(records) // 4 + 1])
        anomalies.analyze(runtime, CRON)
    with runtime.sessions() as s:
        incremental = _histories(s)
    anomalies.analyze(runtime, CRON, full=True)
    with runtime.sessions() as s:
        assert _histories(s) == incremental
    assert {row[0] for row in incremental} and len(incremental) > 5 * len(accts)


def test_a_history_keeps_the_values_seen_last(runtime, monkeypatch):
    """An account's row keeps at most MAX_VALUES values a feature, those seen last, in
    incremental and full runs alike: a client cannot grow it without bound. (A value
    forgotten and seen again starts counting afresh in an incremental run, while a full
    run counts all of history: beyond the bound the two may differ.)"""
    monkeypatch.setattr(rules, "MAX_VALUES", 3)
    ingest(runtime, "accounts", account("K1"))
    for i in range(6):
        ingest(runtime, "logins", login(f"k{i}", "K1", at=at(i * 60), ip=f"198.51.100.{i}",
                                        device_id=f"dev-{i}"))
        anomalies.analyze(runtime, CRON)
    with runtime.sessions() as s:
        incremental = _histories(s)
    kept = {value for _acc, feature, value, *_ in incremental if feature == "ip"}
    assert kept == {"198.51.100.3", "198.51.100.4", "198.51.100.5"}
    assert ("n", 6) in {(feature, count) for _a, feature, _v, count, _s in incremental}
    anomalies.analyze(runtime, CRON, full=True)
    with runtime.sessions() as s:
        assert _histories(s) == incremental


def test_histories_survive_migration_0018_both_ways(runtime):
    """Migration 0018 turns the per-value profile rows into one history row an account
    (and its downgrade back): the same counts, times and logins. On MariaDB, whose keys
    ignore case, values differing only in case become one row on the way back."""
    from sqlalchemy import text

    from polysec_tui.db import migrate

    accts, records = varied_history(4)
    records.append(login("case", accts[0], at=at(1300), browser="VIVALDI 7"))
    records.append(login("case-2", accts[0], at=at(1301), browser="vivaldi 7"))
    ingest_records(runtime, "accounts", [account(a) for a in accts])
    ingest_records(runtime, "logins", records)
    anomalies.analyze(runtime, CRON)
    with runtime.sessions() as s:
        before = _histories(s)
    migrate.downgrade(runtime.engine, "0017")
    with runtime.engine.connect() as conn:
        rows = conn.execute(text("SELECT COUNT(*), SUM(count) FROM login_profiles")).one()
    per_value = [row for row in before if row[1] != "last_located"]
    merged = runtime.engine.dialect.name in ("mysql", "mariadb")
    assert (rows[0], rows[1]) == (len(per_value) - merged, sum(row[3] for row in per_value))
    migrate.upgrade(runtime.engine)
    with runtime.sessions() as s:
        after = _histories(s)
    if not merged:
        assert after == before
    else:
        assert len(after) == len(before) - 1 and sum(r[3] for r in after) == sum(
            r[3] for r in before)


def _histories(s: Any) -> list[tuple[Any, ...]]:
    """The stored login histories as (account, feature, value, count, last seen) rows;
    feature ``n``: the account's logins and the last one's time."""
    rows: list[tuple[Any, ...]] = []
    for r in s.scalars(select(LoginHistory)):
        rows.append((str(r.account_id), rules.TOTAL, "*", r.logins, r.last_login_at))
        rows.append((str(r.account_id), "last_located", "*", 0, repr(r.last_located)))
        rows.extend((str(r.account_id), feature, value, count, seen)
                    for feature, values in r.features.items()
                    for value, (count, seen) in values.items())
    return sorted(rows)


def test_permissions_and_audit(runtime):
    ingest(runtime, "accounts", account("A1"))
    ingest(runtime, "logins", login("l1", "A1"))
    with pytest.raises(RefusedError):
        anomalies.list_anomalies(runtime, CRON)  # automation analyses, never reads
    anomalies.analyze(runtime, ANN)  # a person may run it too
    with runtime.sessions() as s:
        entry = s.scalars(select(AuditLogEntry).where(
            AuditLogEntry.action == "logins.analyze")).one()
        assert json.loads(entry.details)["logins"] == 1 and entry.officer == "ann"
        assert s.scalar(select(func.count()).select_from(LoginAnomaly)) == 0


# ------------------------------------------------------------- RBA CSV end to end

RBA_HEADER = ("index,Login Timestamp,User ID,Round-Trip Time [ms],IP Address,Country,Region,"
              "City,ASN,User Agent String,Browser Name and Version,OS Name and Version,"
              "Device Type,Login Successful,Is Attack IP,Is Account Takeover")


def _rba_row(i: int, when: str, user: int, ip: str, country: str, asn: int, browser: str,
             ok: bool, attack: bool = False, ato: bool = False) -> str:
    return (f"{i},{when},{user},420,{ip},{country},-,-,{asn},\"Mozilla/5.0, (X11)\","
            f"{browser},Mac OS X 10.14,desktop,{ok},{attack},{ato}")


def test_rba_csv_ingest_then_analyze_end_to_end(settings, cli_env, capsys, monkeypatch,
                                                  tmp_path: Path):
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=MovableClock(datetime.now(UTC)))
    staff = make_staff(rt, rt.clock)  # type: ignore[arg-type]
    token, _ = staff.login("ann")
    rows = [RBA_HEADER]
    for d in range(6):  # user 1's ordinary history: Norway, one ISP, Chrome
        rows.append(_rba_row(d, f"2020-02-0{d + 1} 08:00:00.000", 1, "10.0.0.1", "NO", 29695,
                             "Chrome 79.0", True))
    rows.append(_rba_row(6, "2020-02-07 09:00:00.000", 1, "81.0.0.9", "RU", 8359,
                         "Firefox 70.0", True, ato=True))
    for k in range(6):  # user 2: a burst of failures from an attack IP
        rows.append(_rba_row(7 + k, f"2020-02-07 10:0{k}:00.000", 2, "172.16.0.5", "US", 16509,
                             "Chrome 79.0", False, attack=True))
    path = tmp_path / "rba.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = run_cli(capsys, "ingest", "logins", "--format", "rba-csv", str(path))
    assert result.code == 0, result.err
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    result = run_cli(capsys, "logins", "analyze", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["logins"] == 13
    assert report["new_anomalies"]["brute_force"] == 6
    for kind in ("new_country", "new_asn", "risky_login"):
        assert report["new_anomalies"][kind] == 1
    result = run_cli(capsys, "logins", "anomalies", "--since", "2020-01-01T00:00:00Z",
                     "--kind", "new_country", "--json")
    assert result.code == 0, result.err
    (only,) = json.loads(result.out)
    assert only["account"] == "rba-1" and only["login"] == "rba-6"
    result = run_cli(capsys, "logins", "timeline", "rba-1@dataset.invalid")
    assert result.code == 0, result.err
    assert "r***@d***.invalid" in result.out and "new_country" in result.out
    assert "rba-1@dataset.invalid" not in result.out
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(LoginEvent)) == 13
    rt.engine.dispose()

