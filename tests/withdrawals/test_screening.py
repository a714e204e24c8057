"""Screening rules: each fires with its numbers in the explanation and stays quiet on an
ordinary withdrawal; screening is idempotent and holds above the threshold. All three
databases (the per-row windows are each engine's own date arithmetic)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update

from polysec_tui.config import Settings
from polysec_tui.db import migrate
from polysec_tui.db.models import (
    Hold,
    LoginAnomaly,
    LoginEvent,
    SecurityEvent,
    Withdrawal,
    WithdrawalFlag,
    WithdrawalScreening,
)
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.logins import anomalies
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import blocklist, screening
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest, login, security_event, withdrawal
from tests.support.officers import MovableClock, make_staff
from tests.support.screening import (
    CRON,
    HOME_ADDRESS,
    HOME_IP,
    build_history,
    hits,
    iso,
    request,
    status,
)


@pytest.fixture
def rt(runtime: Runtime) -> Runtime:
    build_history(runtime)
    return runtime


def hit_scores(rt: Runtime, ext: str) -> dict[str, float]:
    with rt.sessions() as session:
        return {rule: score for rule, score in session.execute(
            select(WithdrawalFlag.rule, WithdrawalFlag.score)
            .join(Withdrawal, Withdrawal.id == WithdrawalFlag.withdrawal_id)
            .where(Withdrawal.external_id == ext))}


def test_ordinary_withdrawal_fires_nothing_and_stays_pending(rt: Runtime) -> None:
    assert request(rt) == {}
    assert status(rt, "T1") == "pending"
    with rt.sessions() as s:
        wd = s.scalars(select(Withdrawal).where(Withdrawal.external_id == "T1")).one()
        verdict = s.get(WithdrawalScreening, wd.id)
        assert verdict is not None
        assert verdict.screened_at == FIXED_NOW and verdict.risk_score == 0


def test_ip_not_seen(rt: Runtime) -> None:
    found = request(rt, ip="198.51.100.9")
    assert found["ip_not_seen"] == (
        "request IP 198.51.100.9 is not among the 8 successful logins of this account "
        "in the 30 days before the request")
    # The login behind the request does not vouch for its own IP, but an earlier one does.
    ingest(rt, "logins", login("old-same-ip", at=iso(timedelta(days=3)), ip="198.51.100.9"))
    assert "ip_not_seen" not in request(rt, "T2", ip="198.51.100.9")


def test_ip_not_seen_needs_a_history_to_compare_with(runtime: Runtime) -> None:
    """An account with no login attempt at all in the 30 days before the login behind
    the request, while polysec's logins start inside them (a deployment's first weeks),
    is new to polysec: an address it has not seen says nothing. Any attempt (a login too
    young to vouch, from another address; a failure) is something to compare with; and
    once polysec's logins cover the window, no account is new to it."""
    ingest(runtime, "accounts", *(account(a) for a in ("A2", "A3", "A4", "A5")))
    ingest(runtime, "logins", login("A5-L", "A5", at=iso(timedelta(days=10))))
    assert "ip_not_seen" not in request(runtime, "T1", "A2", ip="198.51.100.9",
                                        ago=timedelta(hours=3))
    # T1's login, two hours before, from another address: the intruder's who rotates.
    expected = ("request IP 198.51.100.10 is not among the 0 successful logins of this "
                "account in the 30 days before the request")
    assert request(runtime, "T2", "A2", ip="198.51.100.10")["ip_not_seen"] == expected
    ingest(runtime, "logins", login("A3-F", "A3", at=iso(timedelta(hours=4)), success=False,
                                    ip="198.51.100.10"))
    assert request(runtime, "T3", "A3", ip="198.51.100.10")["ip_not_seen"] == expected
    ingest(runtime, "logins", login("A5-OLD", "A5", at=iso(timedelta(days=31))))
    assert request(runtime, "T4", "A4", ip="198.51.100.10",
                   ago=timedelta(minutes=30))["ip_not_seen"] == expected


def test_a_new_address_on_the_clients_own_network_weighs_a_quarter(rt: Runtime) -> None:
    """A new address on the account's network, in its country (a carrier's or ISP's next
    address), weighs a quarter, unless the request is theft-shaped."""
    found = request(rt, ip="203.0.113.99", login_extra={"asn": 3320})
    assert found["ip_not_seen"].endswith(
        "; its network AS3320 and country DE are ones the account logs in from (x 0.25)")
    assert hit_scores(rt, "T1")["ip_not_seen"] == 5
    request(rt, "T2", ip="203.0.113.98", login_extra={"asn": 3320, "country": "FR"},
            ago=timedelta(days=2))
    assert hit_scores(rt, "T2")["ip_not_seen"] == 20  # the same network from abroad
    # An intruder on the victim's own ISP, draining to a new address: no discount.
    request(rt, "ATO", ip="203.0.113.97", login_extra={"asn": 3320},
            address="bc1qthief", available_balance="0.36", ago=timedelta(days=4))
    assert hit_scores(rt, "ATO")["ip_not_seen"] == 20 and status(rt, "ATO") == "held"


def test_a_trip_paying_the_clients_established_payee_weighs_half(rt: Runtime) -> None:
    """A new address, country and network alone, paying a destination the account paid
    as much two weeks and more before, is a trip: the three weigh half and do not hold.
    Not while the payee is young, nor past what was paid there long before (this
    window's payments to it count), nor when anything else fired."""
    # HOME_ADDRESS was paid for a week (build_history): the new place weighs whole.
    request(rt, "T1", ip="198.51.100.20", login_extra={"country": "FR", "asn": 3215},
            ago=timedelta(hours=30))
    assert sum(hit_scores(rt, "T1").values()) == 50 and status(rt, "T1") == "held"
    ingest(rt, "withdrawals", *(
        withdrawal(f"OLD-{d}", at=iso(timedelta(days=d)), amount="0.3",
                   address=HOME_ADDRESS, available_balance="5") for d in (16, 20)))
    found = request(rt, "T2", ip="198.51.100.21", login_extra={"country": "ES", "asn": 3352})
    assert found["new_country"].endswith(
        "; a new place alone, paying a destination this account paid 2 times from "
        "2026-10-31 12:00 UTC, 0.6 BTC in all, at least 14 days before (x 0.5)")
    assert hit_scores(rt, "T2") == {"ip_not_seen": 10, "new_country": 10, "new_asn": 5}
    assert status(rt, "T2") == "pending"
    # With T2's 0.35 in the window, 0.35 more is past the 0.6 paid there long before.
    request(rt, "T3", ip="198.51.100.22", login_extra={"country": "IT", "asn": 3269},
            ago=timedelta(minutes=30))
    assert sum(hit_scores(rt, "T3").values()) == 50 and status(rt, "T3") == "held"
    # A new destination besides: the place is judged whole.
    request(rt, "T4", ip="198.51.100.23", login_extra={"country": "PL", "asn": 5617},
            address="bc1qelsewhere", ago=timedelta(minutes=20))
    assert hit_scores(rt, "T4")["new_country"] == 20 and status(rt, "T4") == "held"


def _from_abroad(rt: Runtime, ext: str, ago: timedelta, n: int, country: str = "FR",
                 **extra: Any) -> None:
    """A withdrawal ``ago`` from a new address, country and network, not screened."""
    ingest(rt, "logins", login(f"{ext}-login", at=iso(ago + timedelta(minutes=5)),
                               ip=f"198.51.100.{n}", country=country, asn=3215 + n))
    ingest(rt, "withdrawals", withdrawal(ext, **{
        "at": iso(ago), "amount": "0.35", "address": HOME_ADDRESS, "available_balance": "5",
        "login_id": f"{ext}-login", "ip": f"198.51.100.{n}", **extra}))


@pytest.mark.parametrize("one_run", [False, True], ids=["apart", "one-run"])
def test_a_payee_planted_by_a_held_payment_buys_no_trip(rt: Runtime, one_run: bool) -> None:
    """A payment counts for the trip only once screening let it through: an intruder's
    planting payment, held, does not establish their address, even when both are
    screened in one run (a backlog) and the hold is not yet written."""
    # polysec's logins cover the planting's 30 days: its new address weighs.
    ingest(rt, "logins", login("A1-OLD", at=iso(timedelta(days=50))))
    _from_abroad(rt, "PLANT", timedelta(days=15), 30, address="bc1qthief",
                 available_balance="0.36")
    if not one_run:
        screening.screen(rt, CRON)
    _from_abroad(rt, "X", timedelta(hours=1), 31, "IT", address="bc1qthief")
    screening.screen(rt, CRON)
    assert status(rt, "PLANT") == "held"
    assert hit_scores(rt, "X") == {"ip_not_seen": 20, "new_country": 20, "new_asn": 10}
    assert status(rt, "X") == "held"


def test_a_payment_let_through_in_the_same_run_establishes_the_payee(rt: Runtime) -> None:
    """A backlog screened at once: the old payments, judged in the same batch below the
    hold, count as they would have a day later; their amounts add exactly (SQLite stores
    them as text: 0.7 + 0.1 is 0.8, not 0.7999...)."""
    ingest(rt, "withdrawals", *(
        withdrawal(f"OLD-{d}", at=iso(timedelta(days=d)), amount=amount,
                   address="bc1qsavings", available_balance="5")
        for d, amount in ((20, "0.7"), (16, "0.1"))))
    _from_abroad(rt, "T1", timedelta(hours=1), 40, address="bc1qsavings", amount="0.8")
    screening.screen(rt, CRON)
    assert status(rt, "OLD-16") == "pending"
    assert hit_scores(rt, "T1") == {"ip_not_seen": 10, "new_country": 10, "new_asn": 5}
    assert status(rt, "T1") == "pending"


def test_a_trip_with_anything_else_is_judged_whole(rt: Runtime) -> None:
    """The trip halves only a new place alone: a flagged login of the account the day
    before (recent_anomalies) keeps the place whole, though the payee is established."""
    ingest(rt, "withdrawals", *(
        withdrawal(f"OLD-{d}", at=iso(timedelta(days=d)), amount="0.3",
                   address=HOME_ADDRESS, available_balance="5") for d in (16, 20)))
    ingest(rt, "logins", login("FLAGGED", at=iso(timedelta(hours=20)), ip="198.51.100.50",
                               asn=64500, country="BR", city="Recife", lat=-8.05,
                               lon=-34.9, device_id="other", user_agent="curl/8"))
    anomalies.analyze(rt, CRON)
    found = request(rt, "T1", ip="198.51.100.51", login_extra={"country": "ES", "asn": 3352})
    assert "recent_anomalies" in found
    scores = hit_scores(rt, "T1")
    assert (scores["ip_not_seen"], scores["new_country"], scores["new_asn"]) == (20, 20, 10)
    assert status(rt, "T1") == "held"


def test_the_amount_rules_weigh_a_quarter_to_the_clients_own_wallet(rt: Runtime) -> None:
    """A destination paid twice, every payment two weeks old and together half as much
    as the request, is the client's own wallet: sweeping the whole balance to it weighs
    a quarter, unless something says the session is a stranger's."""
    # HOME_ADDRESS was paid for a week (build_history): not yet the client's own wallet.
    request(rt, "T3", available_balance="0.36", ago=timedelta(days=6))
    assert hit_scores(rt, "T3")["drains_balance"] == 25
    ingest(rt, "withdrawals", *(
        withdrawal(f"OLD-{d}", at=iso(timedelta(days=d)), amount="0.1",
                   address=HOME_ADDRESS, available_balance="5") for d in (16, 20)))
    sweep = request(rt, "T4", available_balance="0.36")["drains_balance"]
    assert sweep.endswith(
        "; to a destination this account paid 2 times from 2026-10-31 12:00 UTC, 0.2 BTC "
        "in all, and nothing says this session is a stranger's (x 0.25)")
    assert hit_scores(rt, "T4")["drains_balance"] == 6.25
    # Twice as much as the old payments: dust does not make a wallet.
    request(rt, "T5", amount="0.45", available_balance="0.46", ago=timedelta(days=3))
    assert hit_scores(rt, "T5")["drains_balance"] == 25
    # A stranger's session sweeping to the wallet is judged whole.
    request(rt, "T6", ip="198.51.100.7", available_balance="0.36",
            ago=timedelta(days=4, hours=12))
    assert hit_scores(rt, "T6")["drains_balance"] == 25


def test_a_month_old_save_from_the_usual_device_is_the_clients_own_wallet(
        rt: Runtime) -> None:
    ingest(rt, "logins", login("OLD-L", at=iso(timedelta(days=41))))
    ingest(rt, "security-events",
           security_event("COLD", kind="address_added", address="bc1qcold",
                          at=iso(timedelta(days=40)), ip=HOME_IP, device_id="dev-1"),
           security_event("THEIRS", kind="address_added", address="bc1qtheirs",
                          at=iso(timedelta(days=40)), ip="198.51.100.66",
                          device_id="intruder"))
    anomalies.analyze(rt, CRON)
    cold = request(rt, "T7", address="bc1qcold", available_balance="0.36")["drains_balance"]
    assert "; to a destination saved in this account's address book from its usual " \
           "device and network on 2026-10-11 12:00 UTC" in cold
    # Saved a month and more ago, but by a stranger's device and network: whole.
    request(rt, "T8", address="bc1qtheirs", available_balance="0.36", ago=timedelta(days=2))
    assert hit_scores(rt, "T8")["drains_balance"] == 25


def test_a_salary_day_burst_to_the_clients_own_wallet(rt: Runtime) -> None:
    """velocity is one of the amount rules the own wallet explains; a burst split to a
    planted wallet is judged as its sum against what was paid there before."""
    ingest(rt, "withdrawals", *(
        withdrawal(f"OLD-{d}", at=iso(timedelta(days=d)), amount="0.1",
                   address=HOME_ADDRESS, available_balance="5") for d in (16, 20)))
    ingest(rt, "withdrawals", *(withdrawal(f"PAY-{i}", at=iso(timedelta(minutes=50 - i)),
                                           amount="0.01", address=HOME_ADDRESS,
                                           available_balance="5") for i in range(5)))
    screening.screen(rt, CRON)
    paid = hits(rt, "PAY-4")["velocity"]
    assert "; every destination of the burst had been paid as much before the window " \
           "(x 0.5)" in paid and paid.endswith("is a stranger's (x 0.25)")
    # 25 x 1.5 (within the hour) x 0.5 (places paid as much before) x 0.25 (own wallet)
    assert hit_scores(rt, "PAY-4")["velocity"] == 4.69
    # Parts of 0.15 to the same wallet, each under half of the 0.2 paid there before,
    # but 0.3 and more together: whole from the second part on.
    ingest(rt, "withdrawals", *(withdrawal(f"PART-{i}", at=iso(timedelta(minutes=30 - i)),
                                           amount="0.15", address=HOME_ADDRESS,
                                           available_balance="0.16") for i in range(3)))
    screening.screen(rt, CRON)
    assert hit_scores(rt, "PART-2")["drains_balance"] == 25


def test_dust_paid_ahead_buys_no_discount(rt: Runtime) -> None:
    """An intruder who paid their address dust the day before: their burst there is not
    a salary day, and their new address on the victim's own ISP keeps its whole weight
    (the amount rules fired for an address that is not the client's own wallet)."""
    ingest(rt, "withdrawals", withdrawal("DUST", at=iso(timedelta(hours=30)),
                                         amount="0.0001", address="bc1qtheirs",
                                         available_balance="5"))
    ingest(rt, "withdrawals", *(withdrawal(f"B-{i}", at=iso(timedelta(minutes=70 - i)),
                                           amount="0.5", address="bc1qtheirs",
                                           available_balance="5") for i in range(4)))
    found = request(rt, "T1", ip="203.0.113.99", login_extra={"asn": 3320},
                    address="bc1qtheirs", amount="0.5")
    assert "paid as much before" not in found["velocity"]
    assert hit_scores(rt, "T1")["velocity"] == 37.5
    assert hit_scores(rt, "T1")["ip_not_seen"] == 20 and status(rt, "T1") == "held"


def _burst(rt: Runtime, prefix: str, acct: str, addresses: list[str],
           **extra: Any) -> None:
    """Withdrawals a minute apart, the last 46 minutes before FIXED_NOW, screened."""
    ingest(rt, "withdrawals", *(
        withdrawal(f"{prefix}-{i}", acct, at=iso(timedelta(minutes=50 - i)), address=address,
                   **{"amount": "0.01", "available_balance": "5", **extra})
        for i, address in enumerate(addresses)))
    screening.screen(rt, CRON)


def test_a_burst_to_addresses_saved_a_month_before_weighs_half(rt: Runtime) -> None:
    """A salary day paying places saved in the address book a month and more before,
    whatever the save came from (as new_destination counts them): velocity weighs
    half. Not when one place of the burst is not such a save, when the save was removed,
    or when the burst is one by its sum (no payment shows such amounts are the client's
    habit)."""
    build_history(rt, "A2")
    build_history(rt, "A3")
    month = timedelta(days=40)
    ingest(rt, "security-events", *(
        security_event(f"SAVE-{acct}", acct, kind="address_added", address="bc1qsaved",
                       at=iso(month), ip="198.51.100.66", device_id="unknown")
        for acct in ("A1", "A2", "A3")),
        security_event("GONE", "A3", kind="address_removed", address="bc1qsaved",
                       at=iso(timedelta(days=2))),
        security_event("SAVE-ETH", kind="address_added", address="0xsavedeth",
                       at=iso(month)))
    _burst(rt, "S", "A1", ["bc1qsaved"] * 5)
    found = hits(rt, "S-4")
    assert "new_destination" not in found
    assert found["velocity"].endswith(
        "; every destination of the burst had been paid as much before the window or "
        "saved in the address book a month and more before, and its sum would be no "
        "outlier (x 0.5)")
    assert hit_scores(rt, "S-4")["velocity"] == 18.75  # 25 x 1.5 (the hour) x 0.5
    _burst(rt, "M", "A2", ["bc1qsaved"] * 4 + ["bc1qfresh"])
    assert hit_scores(rt, "M-4")["velocity"] == 37.5
    _burst(rt, "R", "A3", ["bc1qsaved"] * 5)
    assert hit_scores(rt, "R-4")["velocity"] == 37.5
    _burst(rt, "E", "A1", ["0xsavedeth"] * 2, asset="ETH", amount="8",
           available_balance="100")
    assert "approval limit" in hits(rt, "E-1")["velocity"]
    assert hit_scores(rt, "E-1")["velocity"] == 25


def test_a_burst_to_a_saved_address_stays_theft_shaped(rt: Runtime) -> None:
    """The reviewer's intruder: an address saved 40 days before from a stranger's
    device, then five parts within the hour from a new address on the victim's own
    network. velocity weighs half (a single withdrawal of the sum would have fired no
    amount rule either), but unlike a burst to places paid before it does not make the
    session the client's: ip_not_seen keeps its whole weight."""
    ingest(rt, "security-events",
           security_event("SAVE", kind="address_added", address="bc1qplanted",
                          at=iso(timedelta(days=40)), ip="198.51.100.66", device_id="theirs"))
    ingest(rt, "withdrawals", *(withdrawal(f"P-{i}", at=iso(timedelta(minutes=70 - i)),
                                           amount="0.14", address="bc1qplanted",
                                           available_balance="5") for i in range(4)))
    found = request(rt, "T1", ip="203.0.113.99", login_extra={"asn": 3320},
                    address="bc1qplanted", amount="0.14")
    scores = hit_scores(rt, "T1")
    assert scores["velocity"] == 18.75 and scores["ip_not_seen"] == 20
    assert "its network" not in found["ip_not_seen"]


def test_a_theft_split_over_planted_addresses_keeps_its_whole_velocity(rt: Runtime) -> None:
    """The second reviewer's intruder: five addresses planted 40 days before, one part
    to each, the sum 15 times the account's usual ETH withdrawal (one withdrawal of it
    would be an amount outlier; structuring judges one address at a time): velocity
    keeps its whole weight. The same burst of small parts, on another account alike,
    weighs half."""
    build_history(rt, "A2")
    for acct in ("A1", "A2"):
        ingest(rt, "withdrawals", *(
            withdrawal(f"{acct}-ETH-{d}", acct, asset="ETH", amount="0.1", address="0xusual",
                       at=iso(timedelta(days=d)), available_balance="50")
            for d in range(10, 16)))
        ingest(rt, "security-events", *(
            security_event(f"{acct}-SAVE-{i}", acct, kind="address_added",
                           address=f"0xplanted{i}", at=iso(timedelta(days=40)),
                           ip="198.51.100.66", device_id="theirs") for i in range(5)))
    planted = [f"0xplanted{i}" for i in range(5)]
    _burst(rt, "BIG", "A1", planted, asset="ETH", amount="0.3", available_balance="50")
    assert hit_scores(rt, "BIG-4")["velocity"] == 37.5
    assert "saved in the address book" not in hits(rt, "BIG-4")["velocity"]
    _burst(rt, "SMALL", "A2", planted, asset="ETH", amount="0.02", available_balance="50")
    assert hit_scores(rt, "SMALL-4")["velocity"] == 18.75
    assert hits(rt, "SMALL-4")["velocity"].endswith(
        "saved in the address book a month and more before, and its sum would be no "
        "outlier (x 0.5)")


def test_a_login_flagged_as_someone_elses_vouches_for_nothing(rt: Runtime) -> None:
    # An intruder's first login, from abroad and flagged risky, the day before; then a
    # withdrawal from the same address, country and network.
    intruder: dict[str, Any] = {
        "ip": "198.51.100.66", "asn": 64512, "country": "BR", "city": "Recife", "lat": -8.05,
        "lon": -34.9, "device_id": "intruder", "user_agent": "curl/8"}
    ingest(rt, "logins", login("IN-1", at=iso(timedelta(days=1)), **intruder))
    anomalies.analyze(rt, CRON)
    with rt.sessions() as s:
        kinds = set(s.scalars(select(LoginAnomaly.kind).join(
            LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
            .where(LoginEvent.external_id == "IN-1")))
    assert "risky_login" in kinds
    found = request(rt, "T1", ip=intruder["ip"], login_extra={
        k: v for k, v in intruder.items() if k != "ip"})
    assert {"ip_not_seen", "new_country", "new_asn"} <= set(found)
    # Unflagged, the same earlier login would have vouched for all three, once a day old.
    with rt.transaction() as s:
        s.execute(delete(LoginAnomaly))
    found = request(rt, "T2", ip=intruder["ip"], login_extra={
        k: v for k, v in intruder.items() if k != "ip"}, ago=timedelta(minutes=-60))
    assert not {"ip_not_seen", "new_country", "new_asn"} & set(found)


def test_an_unflagged_login_vouches_a_day_later_or_at_once_from_a_known_device(
        rt: Runtime) -> None:
    """An intruder's first login that no detector flagged (a device of their own, an
    address in another country) does not vouch for their return three hours later; it
    does a day later; the client's own device on a new network vouches at once."""
    away: dict[str, Any] = {"ip": "198.51.100.70", "asn": 64513, "country": "PT",
                            "city": "Lisbon", "lat": 38.72, "lon": -9.14}
    ingest(rt, "logins", login("NEW-1", at=iso(timedelta(hours=4)), device_id="theirs",
                               **away))
    with rt.transaction() as s:
        s.execute(delete(LoginAnomaly))
    extra = {k: v for k, v in away.items() if k != "ip"}
    found = request(rt, "T1", ip=away["ip"], login_extra={**extra, "device_id": "theirs"})
    assert {"ip_not_seen", "new_country", "new_asn"} <= set(found)
    assert "is not among the 8 successful logins" in found["ip_not_seen"]
    # The same login a day before the request vouches (the client had a day to notice).
    request(rt, "T2", ip=away["ip"], login_extra={**extra, "device_id": "theirs"},
            ago=timedelta(hours=-21))
    assert not {"ip_not_seen", "new_country", "new_asn"} & set(hits(rt, "T2"))
    # The client's own phone (dev-1, in use for a week) on a new network: at once.
    ingest(rt, "logins", login("MINE-1", at=iso(timedelta(hours=3)), **{
        **away, "ip": "198.51.100.71", "device_id": "dev-1"}))
    found = request(rt, "T3", ip="198.51.100.71", login_extra={**extra, "device_id": "x"},
                    ago=timedelta(hours=2))
    assert not {"ip_not_seen", "new_country", "new_asn"} & set(found)


AWAY: dict[str, Any] = {"ip": "198.51.100.70", "asn": 64513, "country": "PT",
                        "city": "Lisbon", "lat": 38.72, "lon": -9.14}
NOVELTY = {"ip_not_seen", "new_country", "new_asn"}


def intruder_returns(rt: Runtime, device: str | None, ext: str = "T1") -> dict[str, str]:
    """An intruder's first login 4 h before FIXED_NOW that no detector flagged, from
    ``device``; their withdrawal an hour before FIXED_NOW from the same address."""
    ingest(rt, "logins", login(f"{ext}-first", at=iso(timedelta(hours=4)), device_id=device,
                               **AWAY))
    with rt.transaction() as s:
        s.execute(delete(LoginAnomaly))
    extra = {k: v for k, v in AWAY.items() if k != "ip"}
    return request(rt, ext, ip=AWAY["ip"], login_extra={**extra, "device_id": device})


@pytest.mark.parametrize("device", ["", "  ", "DEV-1", "dev-1 ", "dév-1"])
def test_a_blank_or_look_alike_device_id_is_not_the_clients_device(
        rt: Runtime, device: str) -> None:
    """A blank device id is no device (the platform sends "" when it cannot fingerprint,
    and so may the client's own old logins); an id that differs from the client's only
    in case, accents or trailing spaces is another device, on MariaDB too."""
    if not device.strip():  # the client's own fingerprint-less login, days before
        ingest(rt, "logins", login("OLD-BLANK", at=iso(timedelta(days=5)), device_id=device))
    found = intruder_returns(rt, device)  # the client's device is "dev-1" (build_history)
    assert set(found) >= NOVELTY, found
    assert found["ip_not_seen"].endswith(
        "(1 login from it less than 24 h before, from a device new to the account, does not "
        "vouch for it yet)")


def test_a_device_vouches_only_from_a_day_of_the_accounts_own_trusted_logins(
        rt: Runtime) -> None:
    """The intruder's device does not become the account's by their own login two hours
    earlier, by a login to another account, by a failed login, or by a login the
    detectors flagged, however old."""
    ingest(rt, "accounts", account("A2"))
    ingest(rt, "logins",
           login("EARLIER", at=iso(timedelta(hours=6)), device_id="theirs", ip="192.0.2.1"),
           login("OTHER", "A2", at=iso(timedelta(days=3)), device_id="theirs", **AWAY),
           login("FAILED", at=iso(timedelta(days=3)), device_id="theirs", success=False,
                 ip="192.0.2.2"),
           login("FLAGGED", at=iso(timedelta(days=3)), device_id="theirs", ip="192.0.2.3"))
    anomalies.analyze(rt, CRON)
    with rt.transaction() as s:
        flagged = s.scalars(select(LoginEvent).where(LoginEvent.external_id == "FLAGGED")).one()
        s.execute(delete(LoginAnomaly).where(LoginAnomaly.login_event_id != flagged.id))
        s.add(LoginAnomaly(kind="risky_login", severity="medium", score=4.0,
                           account_id=flagged.account_id, login_event_id=flagged.id,
                           at=flagged.at, explanation="risky", details={},
                           detected_at=flagged.at))
    ingest(rt, "logins", login("T1-first", at=iso(timedelta(hours=4)), device_id="theirs",
                               **AWAY))
    extra = {k: v for k, v in AWAY.items() if k != "ip"}
    found = request(rt, "T1", ip=AWAY["ip"], login_extra={**extra, "device_id": "theirs"})
    assert set(found) >= NOVELTY, found


def test_a_security_change_from_the_intruders_first_session_is_not_usual(
        rt: Runtime) -> None:
    """The intruder's unflagged login 4 h before, an e-mail change 2 h later from the
    same device and address: not the client's usual device and network (it was, after
    an hour, before vouch_hours)."""
    ingest(rt, "logins", login("IN-1", at=iso(timedelta(hours=4)), device_id="theirs",
                               **AWAY))
    with rt.transaction() as s:
        s.execute(delete(LoginAnomaly))
    ingest(rt, "security-events", security_event(
        "EM", kind="email_change", at=iso(timedelta(hours=2)), ip=AWAY["ip"],
        device_id="theirs"))
    extra = {k: v for k, v in AWAY.items() if k != "ip"}
    found = request(rt, "T1", ip=AWAY["ip"], login_extra={**extra, "device_id": "theirs"})
    assert "from an unknown device or network (60 x 1 = 60)" in found["security_change_hold"]


def test_new_country_and_new_asn(rt: Runtime) -> None:
    found = request(rt, login_extra={"country": "FR"})
    assert "new_country" in found and "new_asn" not in found
    assert found["new_country"] == (
        "request from country FR, not seen in this account's 8 successful logins of the "
        "last 180 days (seen: DE)")
    found = request(rt, "T2", login_extra={"asn": 64500})
    assert "new_asn" in found and "new_country" not in found
    assert "AS64500" in found["new_asn"] and "8 successful logins" in found["new_asn"]


def test_new_country_needs_history(runtime: Runtime) -> None:
    ingest(runtime, "accounts", account("A1"))
    ingest(runtime, "logins", login("only", at=iso(timedelta(days=2))))
    assert "new_country" not in request(runtime, login_extra={"country": "FR"})


def test_amount_outlier_uses_median_and_mad(rt: Runtime) -> None:
    found = request(rt, amount="4.2")
    assert found["amount_outlier"] == (
        "amount 4.2 BTC is 11.8x this account's median withdrawal of 0.355 BTC "
        "(MAD 0.02, 6 withdrawals)")
    assert "amount_outlier" not in request(rt, "T2", amount="0.5")


def test_amount_outlier_needs_history(runtime: Runtime) -> None:
    ingest(runtime, "accounts", account("A1"))
    ingest(runtime, "withdrawals", withdrawal("W0", at=iso(timedelta(days=3)), amount="0.01"))
    assert "amount_outlier" not in request(runtime, amount="4.2", available_balance="100")


def test_new_destination_and_rejected_history_does_not_count(rt: Runtime) -> None:
    found = request(rt, address="bc1qsomewhereelse")
    assert found["new_destination"].startswith(
        "first withdrawal by this account to bc1qsomewhereelse; 6 earlier")
    assert "new_destination" not in request(rt, "T2", address=HOME_ADDRESS)
    with rt.transaction() as s:
        s.execute(update(Withdrawal).where(Withdrawal.external_id == "T1")
                  .values(status="rejected"))
    assert "new_destination" in request(rt, "T3", address="bc1qsomewhereelse")


def test_address_blocklisted(rt: Runtime) -> None:
    rt.clock = clock = MovableClock(FIXED_NOW)
    staff = make_staff(rt, clock)
    assert blocklist.add(rt, staff.actors["ann"], "bc1qscammer", "reported by chain analysis")
    found = request(rt, address="bc1qscammer")
    assert found["address_blocklisted"].startswith(
        "destination bc1qscammer is on the blocklist since 2026-11-20 12:0")
    assert found["address_blocklisted"].endswith(" UTC: reported by chain analysis")
    assert status(rt, "T1") == "held"  # the weight alone reaches the threshold
    assert "address_blocklisted" not in request(rt, "T2")


def test_security_change_within_window(rt: Runtime) -> None:
    ingest(rt, "security-events",
           security_event("S1", at=iso(timedelta(hours=11)), kind="2fa_reset"),
           security_event("S2", at=iso(timedelta(days=2)), kind="password_change"),
           security_event("S3", at=iso(timedelta(hours=5)), kind="new_device"))
    found = request(rt)
    # Of unknown origin (no device, no address): the whole weight for 24 h, then fading;
    # the strongest change counts whole, the next half.
    assert found["security_change_hold"] == (
        "password_change 1 d 23 h before the request from an unknown device or network "
        "(60 x 1 x 0.52 for its age = 31.25); 2fa_reset 10 h before the request from an "
        "unknown device or network (60 x 1 = 60); 75.62 in all (the strongest whole, the "
        "others half, at most 120) (full weight for 24 h, none after 72 h)")
    assert hit_scores(rt, "T1")["security_change_hold"] == 75.62
    assert status(rt, "T1") == "held"


def test_security_change_outside_window_or_other_kind_is_quiet(rt: Runtime) -> None:
    ingest(rt, "security-events",
           security_event("S2", at=iso(timedelta(days=4)), kind="password_change"),
           security_event("S3", at=iso(timedelta(hours=5)), kind="new_device"))
    assert "security_change_hold" not in request(rt)


def test_a_change_from_the_clients_usual_device_and_network_weighs_less(rt: Runtime) -> None:
    # The history's logins: device dev-1 from 203.0.113.7 (AS3320), days back.
    ingest(rt, "security-events",
           security_event("OWN", at=iso(timedelta(hours=3)), kind="email_change",
                          ip="203.0.113.7", device_id="dev-1"))
    anomalies.analyze(rt, CRON)  # the client's logins judged: none is someone else's
    found = request(rt)
    assert found["security_change_hold"].startswith(
        "email_change 2 h before the request from the client's usual device and network "
        "(60 x 0.25 = 15)")
    assert status(rt, "T1") == "pending"  # alone it holds nothing
    # The same change from the usual network on a phone first seen minutes before.
    ingest(rt, "logins", login("NEWPHONE", at=iso(timedelta(hours=2, minutes=10)),
                               device_id="new-phone"))
    anomalies.analyze(rt, CRON)
    ingest(rt, "security-events",
           security_event("PHONE", at=iso(timedelta(hours=2)), kind="2fa_change",
                          ip="203.0.113.7", device_id="new-phone"))
    assert "the client's usual network on a new device (60 x 0.6 = 36)" in request(
        rt, "T2")["security_change_hold"]
    # From an address and device the account never used, in a session flagged before it.
    ingest(rt, "logins", login("ODD", at=iso(timedelta(minutes=100)), ip="198.51.100.77",
                               asn=64999, country="BR", device_id="odd"))
    anomalies.analyze(rt, CRON)
    ingest(rt, "security-events",
           security_event("SWAP", at=iso(timedelta(minutes=95)), kind="phone_change",
                          ip="198.51.100.77", device_id="odd"))
    found = request(rt, "T3")
    assert "phone_change 35 min before the request from a session the login detectors " \
           "flagged (60 x 1.5 = 90)" in found["security_change_hold"]
    assert status(rt, "T3") == "held"


def test_an_intruders_own_login_or_another_account_never_makes_a_change_usual(
        rt: Runtime) -> None:
    # Another account logs in from the intruder's address on the victim's network and
    # records an event from there: the victim's change is not judged by it.
    ingest(rt, "accounts", account("B1"))
    ingest(rt, "logins", login("B1-L", "B1", at=iso(timedelta(days=2)), ip="192.0.2.50"))
    ingest(rt, "security-events",
           security_event("B1-S", "B1", at=iso(timedelta(days=2)), kind="new_device",
                          ip="192.0.2.50"),
           security_event("CHANGE", at=iso(timedelta(hours=3)), kind="email_change",
                          ip="198.51.100.9", device_id="dev-1"))
    anomalies.analyze(rt, CRON)
    assert "from an unknown device or network (60 x 1 = 60)" in request(
        rt, "T1", ip="198.51.100.9")["security_change_hold"]
    # The intruder's first login (flagged as likely someone else's), then, three hours
    # later, the change from the same device and address: not the client's usual.
    intruder: dict[str, Any] = {
        "ip": "198.51.100.66", "asn": 64512, "country": "BR", "city": "Recife", "lat": -8.05,
        "lon": -34.9, "device_id": "intruder", "user_agent": "curl/8"}
    ingest(rt, "logins", login("IN-1", at=iso(timedelta(hours=7)), **intruder))
    anomalies.analyze(rt, CRON)
    ingest(rt, "security-events",
           security_event("SWAP", at=iso(timedelta(hours=4)), kind="email_change",
                          ip="198.51.100.66", device_id="intruder"))
    found = request(rt, "T2", ip="198.51.100.66", login_extra={
        k: v for k, v in intruder.items() if k != "ip"})
    assert "email_change 3 h before the request from an unknown device or network" in found[
        "security_change_hold"]
    assert status(rt, "T2") == "held"


def test_a_change_is_not_trusted_before_its_logins_were_analysed(rt: Runtime) -> None:
    ingest(rt, "security-events",
           security_event("OWN", at=iso(timedelta(hours=3)), kind="email_change",
                          ip="203.0.113.7", device_id="dev-1"))
    # A login of the account before the change that the analysis has not judged yet.
    ingest(rt, "logins", login("UNJUDGED", at=iso(timedelta(hours=4))))
    assert "from an unknown device or network" in request(rt)["security_change_hold"]
    anomalies.analyze(rt, CRON)
    assert "from the client's usual device and network" in request(rt, "T2")[
        "security_change_hold"]


def test_a_hold_in_force_weighs_the_whole_weight(rt: Runtime) -> None:
    with rt.sessions() as s:
        account_id = s.scalar(select(Withdrawal.account_id).limit(1))
    with rt.transaction() as s:
        s.add(Hold(account_id=account_id, kind="security_change", reason="2FA reset",
                   created_at=FIXED_NOW - timedelta(hours=3),
                   expires_at=FIXED_NOW + timedelta(hours=45)))
    ingest(rt, "security-events",
           security_event("OWN", at=iso(timedelta(hours=3)), kind="password_change",
                          ip="203.0.113.7", device_id="dev-1"))
    request(rt)
    assert hit_scores(rt, "T1")["security_change_hold"] == 60
    assert status(rt, "T1") == "held"


def test_active_hold_fires_security_change_hold(rt: Runtime) -> None:
    with rt.sessions() as s:
        account_id = s.scalar(select(Withdrawal.account_id).limit(1))
    with rt.transaction() as s:
        s.add(Hold(account_id=account_id, kind="security_change", reason="2FA reset",
                   created_at=FIXED_NOW - timedelta(hours=3),
                   expires_at=FIXED_NOW + timedelta(hours=45)))
        s.add(Hold(account_id=account_id, kind="security_change", reason="old",
                   created_at=FIXED_NOW - timedelta(days=9),
                   expires_at=FIXED_NOW - timedelta(days=7)))
    found = request(rt)
    assert found["security_change_hold"].startswith("security-change hold #")
    assert "placed 2026-11-20 09:00 UTC (until 2026-11-22 09:00 UTC, at least 60)" in found[
        "security_change_hold"]
    assert found["security_change_hold"].count("hold #") == 1  # the expired one is not


def test_velocity_count_and_sum(rt: Runtime) -> None:
    # Paid to a new place: a burst to destinations paid before is the salary-day test's.
    for n in range(4):
        ingest(rt, "withdrawals", withdrawal(f"V{n}", at=iso(timedelta(hours=5 + n)),
                                             amount="0.01", address="bc1qburst",
                                             available_balance="5", login_id="A1-L1"))
    found = request(rt, amount="0.01")
    assert found["velocity"] == (
        "5 withdrawal(s) totalling 0.05 BTC in 24 h including this one: at or above the "
        "limit of 5 withdrawals and above this account's usual busy 24 h (0)")
    # The sum: 0.35 + 0.5 reaches the default 0.75 BTC approval limit.
    assert "velocity" in request(rt, "T2", amount="0.5")


def test_velocity_weighs_the_burst_against_the_clients_own_pace(rt: Runtime) -> None:
    def burst(prefix: str, first: timedelta, step: timedelta, n: int) -> None:
        ingest(rt, "withdrawals", *(
            withdrawal(f"{prefix}{i}", at=iso(first - i * step), amount="0.01",
                       address="bc1qburst", available_balance="5", login_id="A1-L1")
            for i in range(n)))

    # Five within the last hour (this one the fifth): a burst, weighed half as much again.
    burst("H", timedelta(minutes=65), timedelta(minutes=1), 4)
    found = request(rt, "T1", amount="0.01")
    assert "4 of them within the hour" not in found["velocity"]
    assert "5 of them within the hour (x 1.5)" in found["velocity"]
    assert hit_scores(rt, "T1")["velocity"] == 37.5


def test_structuring_splits_to_a_new_address_are_judged_as_their_sum(rt: Runtime) -> None:
    def to(address: str, prefix: str, amount: str, n: int) -> None:
        ingest(rt, "withdrawals", *(
            withdrawal(f"{prefix}{i}", at=iso(timedelta(hours=5 - i)), amount=amount,
                       address=address, available_balance="5", login_id="A1-L1")
            for i in range(n)))

    # Two parts of 0.3 BTC to a fresh address, then this third: 0.9 BTC as one withdrawal,
    # 2.6x the client's usual 0.35 and above the 0.75 BTC approval limit.
    to("bc1qfreshplace", "S", "0.3", 2)
    found = request(rt, "T1", amount="0.3", address="bc1qfreshplace")
    assert found["structuring"] == (
        "3 withdrawals totalling 0.9 BTC to bc1qfreshplace, the first of them 4 h before "
        "this request, an address this account had paid less before; as one withdrawal: at "
        "or above the 0.75 BTC approval limit")
    # Small parts whose sum is ordinary, the client's usual address, or only two parts:
    # nothing.
    to("bc1qsmallparts", "M", "0.05", 3)
    assert "structuring" not in request(rt, "T2", amount="0.05", address="bc1qsmallparts")
    to(HOME_ADDRESS, "H", "0.4", 2)
    assert "structuring" not in request(rt, "T3", amount="0.4")
    to("bc1qonlytwo", "W", "0.5", 1)
    assert "structuring" not in request(rt, "T4", amount="0.5", address="bc1qonlytwo")
    # The same address in other spellings is one destination; a dust payment there
    # before the window (no officer let it through) does not make it known.
    ingest(rt, "withdrawals", withdrawal("SEED", at=iso(timedelta(days=2)), amount="0.0001",
                                         address="0xabcdef0123", available_balance="5"))
    to("0xABCDEF0123", "C", "0.3", 1)
    to(" 0xAbCdEf0123", "D", "0.3", 1)
    assert "structuring" in request(rt, "T5", amount="0.3", address="0xabcdef0123")


def test_a_flagged_intruder_login_does_not_end_dormancy(runtime: Runtime) -> None:
    ingest(runtime, "accounts", account("A1"))
    ingest(runtime, "logins", *(login(f"L{d}", at=iso(timedelta(days=d)))
                                for d in range(130, 140)))
    ingest(runtime, "logins", login("IN-1", at=iso(timedelta(days=2)), ip="198.51.100.66",
                                    asn=64512, country="BR", city="Recife", lat=-8.05,
                                    lon=-34.9, device_id="intruder", user_agent="curl/8"))
    anomalies.analyze(runtime, CRON)
    assert "dormant" in request(runtime)


def test_a_client_who_always_withdraws_often_is_not_a_burst(runtime: Runtime) -> None:
    ingest(runtime, "accounts", account("A1"))
    ingest(runtime, "logins", *(login(f"L{d}", at=iso(timedelta(days=d, hours=1)))
                                for d in range(1, 30)))
    # Six a day, every day, for three weeks: this client's pace.
    ingest(runtime, "withdrawals", *(
        withdrawal(f"D{d}-{k}", at=iso(timedelta(days=d, hours=k)), amount="0.01",
                   address=HOME_ADDRESS, available_balance="5")
        for d in range(2, 23) for k in range(6)))
    screening.screen(runtime, CRON)
    ingest(runtime, "withdrawals", *(
        withdrawal(f"T{k}", at=iso(timedelta(hours=k + 1)), amount="0.01",
                   address=HOME_ADDRESS, available_balance="5") for k in range(6)))
    screening.screen(runtime, CRON)
    assert "velocity" not in hits(runtime, "T0")  # the sixth today, as every day
    ingest(runtime, "withdrawals", withdrawal("T-7", at=iso(timedelta(minutes=30)),
                                              amount="0.01", address=HOME_ADDRESS,
                                              available_balance="5"))
    screening.screen(runtime, CRON)
    assert "above this account's usual busy 24 h (6)" in hits(runtime, "T-7")["velocity"]


def test_decoys_do_not_make_a_burst_usual(runtime: Runtime) -> None:
    ingest(runtime, "accounts", account("A1"))
    ingest(runtime, "logins", *(login(f"L{d}", at=iso(timedelta(days=d, hours=1)))
                                for d in range(1, 12)))
    # An intruder's twenty dust withdrawals on one day, ten days ago, to their address.
    ingest(runtime, "withdrawals", *(
        withdrawal(f"DUST{k}", at=iso(timedelta(days=10, minutes=k)), amount="0.0001",
                   address="bc1qintruder", available_balance="5") for k in range(20)))
    screening.screen(runtime, CRON)
    ingest(runtime, "withdrawals", *(
        withdrawal(f"T{k}", at=iso(timedelta(minutes=k + 1)), amount="0.01",
                   address="bc1qintruder", available_balance="5") for k in range(6)))
    screening.screen(runtime, CRON)
    assert "usual busy 24 h (0)" in hits(runtime, "T0")["velocity"]


def test_velocity_quiet_on_spread_out_withdrawals(rt: Runtime) -> None:
    assert "velocity" not in request(rt)


def test_dormant_account(runtime: Runtime) -> None:
    ingest(runtime, "accounts", account("A1"))
    ingest(runtime, "logins", *(login(f"L{d}", at=iso(timedelta(days=d))) for d in (130, 140)))
    ingest(runtime, "withdrawals", withdrawal("W0", at=iso(timedelta(days=135)),
                                              address=HOME_ADDRESS))
    found = request(runtime)
    assert found["dormant"] == (
        "no login or withdrawal for 129 days (last activity 2026-07-13 12:00 UTC; dormant "
        "after 90 days), then a login 5 min before this request")


def test_a_dormant_accounts_waking_fades_instead_of_ending_at_a_cliff(
        runtime: Runtime) -> None:
    """An intruder who wakes a dormant account and waits: the waking weighs fully for
    ``dormant_grace_hours``, then less and less up to ``security_fade_hours``. A login
    the detectors judged someone else's does not wake the account."""
    ingest(runtime, "accounts", account("A1"), account("A2"))
    ingest(runtime, "logins",
           *(login(f"L{d}", at=iso(timedelta(days=d))) for d in (130, 140)),
           login("WAKE", at=iso(timedelta(hours=49))),
           login("B-old", "A2", at=iso(timedelta(days=130))),
           login("B-WAKE", "A2", at=iso(timedelta(hours=49)), ip="198.51.100.66"))
    _flag(runtime, "B-WAKE", "risky_login", "high")
    found = request(runtime)
    # 48 h after the waking: 25 x (1 - 24 / 48).
    assert found["dormant"].endswith(
        "then a login 2 d before this request (25 x 0.50 for its age = 12.5; full weight "
        "for 24 h, none after 72 h)")
    assert hit_scores(runtime, "T1")["dormant"] == 12.5
    woke_by_intruder = request(runtime, "T2", "A2")["dormant"]
    assert woke_by_intruder.endswith("then a login 5 min before this request")
    assert hit_scores(runtime, "T2")["dormant"] == 25
    # Past the window the waking is the account's activity again.
    assert "dormant" not in request(runtime, "T3", ago=timedelta(hours=-24))


def test_a_withdrawal_of_another_asset_ends_dormancy(runtime: Runtime) -> None:
    """Any withdrawal is activity (docs/screening.md), not only one of the same asset."""
    ingest(runtime, "accounts", account("A1"))
    ingest(runtime, "logins", *(login(f"L{d}", at=iso(timedelta(days=d))) for d in (130, 140)))
    ingest(runtime, "withdrawals",
           withdrawal("W0", at=iso(timedelta(days=135)), address=HOME_ADDRESS),
           withdrawal("E0", at=iso(timedelta(days=20)), asset="ETH", amount="1",
                      address="0xhome"))
    assert "dormant" not in request(runtime)


def test_history_across_batch_boundaries(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of two: each withdrawal still sees the earlier ones of other batches."""
    monkeypatch.setattr(screening, "BATCH", 2)
    for n in range(4):
        ingest(rt, "withdrawals", withdrawal(f"V{n}", at=iso(timedelta(hours=5 + n)),
                                             amount="0.01", address=HOME_ADDRESS,
                                             available_balance="5", login_id="A1-L1"))
    found = request(rt, amount="0.01")
    assert found["velocity"].startswith("5 withdrawal(s) totalling 0.05 BTC in 24 h")
    assert "velocity" not in hits(rt, "V0")  # four in 24 h, 0.04 BTC: below both limits
    assert "new_destination" not in hits(rt, "V3")
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Withdrawal)) == s.scalar(
            select(func.count()).select_from(WithdrawalScreening))


def test_active_account_is_not_dormant(rt: Runtime) -> None:
    assert "dormant" not in request(rt)


def test_drains_balance(rt: Runtime) -> None:
    found = request(rt, available_balance="0.36")
    assert found["drains_balance"] == (
        "amount 0.35 BTC is 97% of the available balance of 0.36 BTC (threshold 90%)")
    assert "drains_balance" not in request(rt, "T2", available_balance="0.5")


def test_risky_session(rt: Runtime) -> None:
    request(rt)  # creates T1-login
    ingest(rt, "logins", login("T2-login", at=iso(timedelta(minutes=65))),
           login("T3-login", at=iso(timedelta(minutes=65))))
    with rt.transaction() as s:
        ids = {ext: i for ext, i in s.execute(select(LoginEvent.external_id, LoginEvent.id)
               .where(LoginEvent.external_id.in_(["T2-login", "T3-login"])))}
        account_id = s.scalar(select(Withdrawal.account_id).limit(1))
        for ext, severity in (("T2-login", "high"), ("T3-login", "low")):
            s.add(LoginAnomaly(kind="impossible_travel", severity=severity, score=5.0,
                               account_id=account_id, login_event_id=ids[ext],
                               at=FIXED_NOW, source_ip=None, source_asn=None,
                               explanation="x", details={}, detected_at=FIXED_NOW))
    for ext in ("T2", "T3"):
        ingest(rt, "withdrawals", withdrawal(ext, at=iso(timedelta(hours=1)),
                                             address=HOME_ADDRESS, available_balance="5",
                                             login_id=f"{ext}-login"))
    screening.screen(rt, CRON)
    assert hits(rt, "T2")["risky_session"] == (
        "the login behind this request (T2-login) was itself flagged: "
        "impossible_travel (high)")
    assert "risky_session" not in hits(rt, "T3")  # low is below the default floor


def test_screen_is_idempotent_and_reports(rt: Runtime) -> None:
    request(rt, ip="198.51.100.9", amount="4.2", address="bc1qnew")
    with rt.sessions() as s:
        before = s.scalar(select(func.count()).select_from(WithdrawalFlag))
    again = screening.screen(rt, CRON)
    assert again.screened == 0 and again.held == 0
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(WithdrawalFlag)) == before
    assert status(rt, "T1") == "held"


def test_screen_holds_only_at_threshold(rt: Runtime) -> None:
    cfg = replace(screening.ScreeningConfig(), hold_threshold=200)
    ingest(rt, "withdrawals", withdrawal("T9", at=iso(timedelta(hours=1)), amount="4.2",
                                         address="bc1qnew", ip="198.51.100.9",
                                         available_balance="5"))
    report = screening.screen(rt, CRON, config=cfg)
    assert report.screened == 1 and report.held == 0 and status(rt, "T9") == "pending"


def test_screen_needs_permission_and_is_audited(rt: Runtime) -> None:
    from polysec_tui.services.auditchain import tail

    with pytest.raises(RefusedError):
        screening.screen(rt, Actor(CRON.officer_id, "x", "unknown-role"))
    with rt.sessions() as s:
        assert tail(s, 1)[0].action == "withdrawals.screen"


def test_config_from_toml(settings: Settings) -> None:
    custom = Settings(settings.db_url, settings.keyring_path, options={"screening": {
        "hold_threshold": 70, "security_hold_hours": 24, "weights": {"dormant": 5},
        "approval_limits": {"btc": "2.5"}, "amount_ratio": 4}})
    cfg = screening.load_config(custom)
    assert cfg.hold_threshold == 70 and cfg.security_hold_hours == 24
    assert cfg.weight("dormant") == 5 and cfg.weight("ip_not_seen") == 20
    assert str(cfg.approval_limit("BTC")) == "2.5"
    for bad in ({"nope": 1}, {"weights": {"nope": 1}}, {"velocity_count": -1},
                {"approval_limits": {"BTC": "0"}}):
        with pytest.raises(InputError):
            screening.load_config(Settings(settings.db_url, settings.keyring_path,
                                           options={"screening": bad}))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_demo_account_takeover_is_held_and_few_normal_ones(settings: Settings) -> None:
    from polysec_tui.db.models import DemoScenario, DemoScenarioEvent
    from polysec_tui.services.runtime import open_runtime
    from polysec_tui.synthetic.demo import build_demo
    from polysec_tui.synthetic.generator import DemoSpec

    build_demo(settings, DemoSpec(accounts=400, days=10, seed=3, anchor=FIXED_NOW))
    rt = open_runtime(settings)
    try:
        with rt.sessions() as s:
            attack = set(s.scalars(
                select(DemoScenarioEvent.external_id)
                .join(DemoScenario, DemoScenario.id == DemoScenarioEvent.scenario_id)
                .where(DemoScenarioEvent.event_type == "withdrawal",
                       DemoScenario.kind == "account_takeover")))
            every_attack = set(s.scalars(
                select(DemoScenarioEvent.external_id)
                .where(DemoScenarioEvent.event_type == "withdrawal")))
            statuses = dict(s.execute(select(Withdrawal.external_id, Withdrawal.status)).all())
        assert attack and all(statuses[e] == "held" for e in attack)
        for ext in attack:
            assert {"new_destination", "ip_not_seen", "security_change_hold",
                    "drains_balance"} <= set(hits(rt, ext))
        normal = [st for e, st in statuses.items() if e not in every_attack]
        assert statuses and sum(st == "held" for st in normal) <= 0.05 * len(normal)
        assert all(st in ("pending", "held") for st in normal)
    finally:
        rt.engine.dispose()


def test_without_the_login_the_request_ip_locates_the_request(rt: Runtime) -> None:
    """No login_id: country and network come from the request IP's latest login."""
    ingest(rt, "logins", login("elsewhere", at=iso(timedelta(hours=2)), ip="192.0.2.80",
                               country="BR", asn=28573, success=False))
    ingest(rt, "withdrawals", withdrawal("T9", at=iso(timedelta(hours=1)), ip="192.0.2.80",
                                         address=HOME_ADDRESS, available_balance="5"))
    screening.screen(rt, CRON)
    found = hits(rt, "T9")
    assert "country BR" in found["new_country"] and "AS28573" in found["new_asn"]
    assert "ip_not_seen" in found


def _mixed_backlog(rt: Runtime) -> None:
    """Twelve unscreened withdrawals of A1: ordinary ones, new addresses, unknown IPs,
    a drain and an outlier, spread over the last hours."""
    ingest(rt, "withdrawals", *(
        withdrawal(f"M{n}", at=iso(timedelta(minutes=300 - 20 * n)),
                   amount=("7.5" if n == 7 else "0.35"),
                   address=(f"bc1qelsewhere{n}" if n % 3 == 0 else HOME_ADDRESS),
                   ip=("198.51.100.9" if n % 4 == 1 else "203.0.113.7"),
                   available_balance=("0.36" if n == 5 else "50"), login_id="A1-L1")
        for n in range(12)))


def _outcome(rt: Runtime) -> dict[str, tuple[str, float | None, dict[str, str]]]:
    """Each withdrawal's status, score and hits."""
    with rt.sessions() as s:
        flags: dict[int, dict[str, str]] = {}
        for f in s.scalars(select(WithdrawalFlag)):
            flags.setdefault(f.withdrawal_id, {})[f.rule] = f.explanation
        return {w.external_id: (w.status, risk, flags.get(w.id, {}))
                for w, risk in s.execute(
                    select(Withdrawal, WithdrawalScreening.risk_score).outerjoin(
                        WithdrawalScreening,
                        WithdrawalScreening.withdrawal_id == Withdrawal.id))}


def _unscreen(rt: Runtime, ext_prefix: str) -> None:
    with rt.transaction() as s:
        ids = select(Withdrawal.id).where(Withdrawal.external_id.startswith(ext_prefix))
        s.execute(WithdrawalFlag.__table__.delete().where(  # type: ignore[attr-defined]
            WithdrawalFlag.withdrawal_id.in_(ids)))
        s.execute(delete(WithdrawalScreening).where(WithdrawalScreening.withdrawal_id.in_(ids)))
        s.execute(update(Withdrawal).where(Withdrawal.id.in_(ids)).values(status="pending"))


def test_worker_processes_judge_as_this_process_does(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog of several batches is judged by worker processes while this one writes;
    the hits, scores and holds are exactly those of judging here, batch after batch."""
    monkeypatch.setattr(screening, "BATCH", 3)
    started: list[int] = []
    real_pool = screening._worker_pool

    def spy(rt: Runtime, n: int) -> ProcessPoolExecutor:
        started.append(n)
        return real_pool(rt, n)

    monkeypatch.setattr(screening, "_worker_pool", spy)
    _mixed_backlog(rt)
    in_here = screening.screen(rt, CRON, workers=0)
    inline = _outcome(rt)
    _unscreen(rt, "M")
    by_workers = screening.screen(rt, CRON, workers=2)
    assert started == [2]  # and not for the in-process run
    assert _outcome(rt) == inline
    assert by_workers.screened == in_here.screened == 12
    assert by_workers.hits == in_here.hits and by_workers.held == in_here.held >= 1
    assert {"new_destination", "ip_not_seen", "drains_balance", "amount_outlier"} <= set(
        by_workers.hits)


def test_verdicts_survive_migration_0009_both_ways(rt: Runtime) -> None:
    """Migration 0009 moves each screened withdrawal's time and score into
    withdrawal_screenings, with hits referencing the rows (a SQLite table copy would
    fail on those), and its downgrade moves them back."""
    _mixed_backlog(rt)
    screening.screen(rt, CRON, workers=0)
    before = _outcome(rt)
    assert any(risk for _, risk, _ in before.values())
    migrate.downgrade(rt.engine, "0008")
    with rt.engine.connect() as conn:
        old = {ext: (status, risk) for ext, status, risk, at in conn.execute(text(
            "SELECT external_id, status, risk_score, screened_at FROM withdrawals"))
            if at is not None}
    assert old == {ext: (status, risk) for ext, (status, risk, _) in before.items()
                   if risk is not None}
    migrate.upgrade(rt.engine)
    assert _outcome(rt) == before


def test_two_runs_at_once_screen_each_withdrawal_once(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent runs judge the same batches, but each withdrawal's verdict is written
    by one of them only: the writer skips what another run screened meanwhile."""
    import threading

    monkeypatch.setattr(screening, "BATCH", 2)
    _mixed_backlog(rt)
    reports: list[screening.ScreenReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(screening.screen(rt, CRON, workers=0))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.screened for r in reports) == 12
    together = _outcome(rt)
    _unscreen(rt, "M")
    screening.screen(rt, CRON, workers=0)
    assert _outcome(rt) == together  # the same verdicts as one run alone, none twice


def test_a_withdrawal_committed_late_into_a_judged_range_waits(rt: Runtime) -> None:
    """A row that appears inside a batch's id range after the batch was judged (ids are
    not committed in order) is not marked screened with the batch: the next run judges it."""
    ingest(rt, "withdrawals", *(
        withdrawal(f"R{n}", at=iso(timedelta(hours=3 - n)), address=f"bc1qfresh{n}",
                   available_balance="5", login_id="A1-L1") for n in range(3)))
    with rt.sessions() as s:
        ids = list(s.scalars(select(Withdrawal.id).where(Withdrawal.external_id
                                                          .startswith("R"))
                             .order_by(Withdrawal.id)))
    with rt.transaction() as s:  # R1 "not yet committed" while the batch is judged
        s.add(WithdrawalScreening(withdrawal_id=ids[1], screened_at=FIXED_NOW,
                                  risk_score=0.0))
    verdict = screening._judge(rt.sessions, ids, screening.ScreeningConfig())
    assert verdict.judged == [ids[0], ids[2]]
    with rt.transaction() as s:
        s.execute(delete(WithdrawalScreening).where(WithdrawalScreening.withdrawal_id == ids[1]))
    report = screening.ScreenReport()
    screening._record(rt, verdict, screening.ScreeningConfig(), report)
    assert report.screened == 2
    assert status(rt, "R1") == "pending" and hits(rt, "R1") == {}
    with rt.sessions() as s:
        assert s.get(WithdrawalScreening, ids[1]) is None
    assert screening.screen(rt, CRON).screened == 1
    assert "new_destination" in hits(rt, "R1")


def _judged(rt: Runtime, ext: str, **extra: Any) -> screening._Verdict:
    """An unscreened withdrawal that scores above the threshold, judged, not recorded."""
    ingest(rt, "withdrawals", withdrawal(ext, at=iso(timedelta(hours=1)), amount="4.2",
                                         address="bc1qnew", ip="198.51.100.9",
                                         available_balance="5", **extra))
    with rt.sessions() as s:
        wid = s.scalars(select(Withdrawal.id).where(Withdrawal.external_id == ext)).one()
    return screening._judge(rt.sessions, [wid], screening.ScreeningConfig())


def test_a_verdict_recorded_twice_is_written_once(rt: Runtime) -> None:
    """Two runs that judged the same batch: the second to record writes nothing."""
    verdict = _judged(rt, "D1")
    first, second = screening.ScreenReport(), screening.ScreenReport()
    screening._record(rt, verdict, screening.ScreeningConfig(), first)
    flags_after_first = hits(rt, "D1")
    screening._record(rt, verdict, screening.ScreeningConfig(), second)
    assert (first.screened, first.held) == (1, 1) and len(flags_after_first) >= 3
    assert (second.screened, second.held, second.hits) == (0, 0, {})
    assert hits(rt, "D1") == flags_after_first and status(rt, "D1") == "held"


def test_a_withdrawal_an_officer_took_while_it_was_judged_keeps_its_status(
        rt: Runtime) -> None:
    """Claimed between judging and recording: scored and screened, not held over the
    officer's claim, and not counted as held."""
    verdict = _judged(rt, "D2")
    with rt.transaction() as s:
        s.execute(update(Withdrawal).where(Withdrawal.external_id == "D2")
                  .values(status="in_review"))
    report = screening.ScreenReport()
    screening._record(rt, verdict, screening.ScreeningConfig(), report)
    assert (report.screened, report.held) == (1, 0)
    assert status(rt, "D2") == "in_review" and "new_destination" in hits(rt, "D2")
    with rt.sessions() as s:
        score = s.scalar(select(WithdrawalScreening.risk_score).join(Withdrawal).where(
            Withdrawal.external_id == "D2"))
    assert score is not None and score >= 50


def test_an_address_the_client_saved_long_before_is_history(rt: Runtime) -> None:
    """The platform's address book (security events address_added, address_whitelisted,
    address_removed): a destination the client saved from their usual device and
    network a day and more before the request is not a new destination. One saved
    minutes before is (the explanation says when), so is one saved from a device and
    network the account never used (an intruder can save theirs and wait), one removed
    since (a removal at the same instant wins), and one in another account's book.
    Addresses compare as sanctions lists compare them (hex in any case)."""
    home = {"ip": HOME_IP, "device_id": "dev-1"}  # A1's logins: build_history

    def book(ext: str, kind: str, address: str, ago: timedelta,
             **where: str) -> dict[str, Any]:
        return security_event(ext, kind=kind, address=address, at=iso(ago),
                              **(where or home))

    eth = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"
    ingest(rt, "accounts", account("A2"))
    ingest(rt, "security-events",
           book("S1", "address_added", "bc1qcoldwallet", timedelta(days=3)),
           book("S2", "address_whitelisted", "bc1qjustnow", timedelta(hours=1, minutes=10)),
           book("S3", "address_added", "bc1qdropped", timedelta(days=3)),
           book("S4", "address_removed", "bc1qdropped", timedelta(days=2)),
           book("S5", "address_added", "bc1qtheirs", timedelta(days=3), ip="198.51.100.66",
                device_id="intruder"),
           book("S6", "address_added", eth, timedelta(days=3)),
           book("S7", "address_whitelisted", "bc1qtie", timedelta(days=3)),
           book("S8", "address_removed", "bc1qtie", timedelta(days=3)),
           security_event("S9", "A2", kind="address_added", address="bc1qother",
                          at=iso(timedelta(days=3))))
    anomalies.analyze(rt, CRON)  # a save's origin is judged by analysed logins only
    assert "new_destination" not in request(rt, "T1", address="bc1qcoldwallet")
    recent = request(rt, "T2", address="bc1qjustnow")["new_destination"]
    assert recent.endswith("saved to the address book only 10 min before the request "
                           "(it counts from 24 h)")
    assert "new_destination" in request(rt, "T3", address="bc1qdropped")
    intruder = request(rt, "T4", address="bc1qtheirs")["new_destination"]
    assert intruder.endswith("from an unknown device or network: not counted")
    assert "new_destination" not in request(rt, "T5", address=eth.lower())
    assert "new_destination" in request(rt, "T6", address="bc1qtie")
    assert "new_destination" in request(rt, "T7", address="bc1qother")
    with rt.sessions() as s:
        stored = dict(s.execute(select(SecurityEvent.external_id, SecurityEvent.address)).all())
    assert stored["S1"] == "bc1qcoldwallet" and stored["S9"] == "bc1qother"


def test_saving_the_destination_is_a_security_change_for_a_withdrawal_to_it(
        rt: Runtime) -> None:
    """An intruder who knows a new address is held saves theirs to the address book and
    comes back a day later: the save weighs as a security change of the withdrawals to
    that address (where it was made from, fading after 24 h), not of the others."""
    ingest(rt, "logins", login("IN-1", at=iso(timedelta(hours=29, minutes=10)), ip=HOME_IP,
                               device_id="dev-x"))
    ingest(rt, "security-events",
           security_event("SAVE", kind="address_added", address="bc1qpatient",
                          at=iso(timedelta(hours=29)), ip=HOME_IP, device_id="dev-x"),
           security_event("MINE", kind="address_whitelisted", address="bc1qmine",
                          at=iso(timedelta(hours=1, minutes=10)), ip=HOME_IP,
                          device_id="dev-1"))
    anomalies.analyze(rt, CRON)
    theirs = request(rt, "T1", address="bc1qpatient", login_extra={"device_id": "dev-x"},
                     device_id="dev-x")
    # 28 h after the save, by the device behind the request, new to the account: 60 x 1
    # (an unknown device's) x (1 - 4 / 696).
    assert theirs["security_change_hold"].startswith(
        "address_added (this destination) 1 d 4 h before the request from the device "
        "behind this request, new to the account 1 d 4 h before")
    assert hit_scores(rt, "T1")["security_change_hold"] == 59.66
    # From another device the save weighs as where it was made from: the client's
    # usual network on a new device, 60 x 0.6 x (1 - 4 / 48).
    found = request(rt, "T1b", address="bc1qpatient")
    assert "from the client's usual network on a new device (60 x 0.6 x 0.92 for its " \
           "age = 33)" in found["security_change_hold"]
    assert "new_destination" in theirs
    # The same session paying an address the client has paid before: no change of its.
    assert "security_change_hold" not in request(rt, "T2", login_extra={"device_id": "dev-x"},
                                                 device_id="dev-x")
    # The client's own save from their usual device and network weighs a quarter.
    mine = request(rt, "T3", address="bc1qmine")["security_change_hold"]
    assert mine.startswith("address_whitelisted (this destination) 10 min before the "
                           "request from the client's usual device and network (60 x "
                           "0.25 = 15)")


def test_a_young_devices_save_of_the_destination_is_not_waited_out(rt: Runtime) -> None:
    """The patient intruder who waits five days: a save of the destination by the very
    device behind the request, new to the account less than a week before, weighs as an
    unknown device's and fades until the save counts as history (30 days). A device
    the account has used for weeks gets the ordinary window."""
    ingest(rt, "logins",
           login("IN-1", at=iso(timedelta(days=5, hours=1)), ip=HOME_IP, device_id="dev-x"),
           login("OLD-PHONE", at=iso(timedelta(days=20)), ip=HOME_IP, device_id="dev-2"))
    ingest(rt, "security-events",
           security_event("SAVE", kind="address_added", address="bc1qpatient",
                          at=iso(timedelta(days=5)), ip=HOME_IP, device_id="dev-x"),
           security_event("MINE", kind="address_added", address="bc1qmine",
                          at=iso(timedelta(days=5)), ip=HOME_IP, device_id="dev-2"))
    anomalies.analyze(rt, CRON)
    theirs = request(rt, "T1", address="bc1qpatient", login_extra={"device_id": "dev-x"},
                     device_id="dev-x")
    assert theirs["security_change_hold"].startswith(
        "address_added (this destination) 4 d 23 h before the request from the device "
        "behind this request, new to the account 5 d before (weighed as an unknown "
        "device's, fading over 30 days) (60 x 1 x 0.86 for its age = 51.81)")
    # 119 h after the save: 60 x 1 x (1 - 95 / 696)
    assert hit_scores(rt, "T1")["security_change_hold"] == 51.81
    assert status(rt, "T1") == "held"
    request(rt, "T2", address="bc1qmine", login_extra={"device_id": "dev-2"},
            device_id="dev-2", ago=timedelta(hours=2))
    assert "security_change_hold" not in hits(rt, "T2")  # past 72 h: the ordinary window


def test_time_bounds_are_inclusive_on_every_engine(rt: Runtime) -> None:
    """A device used exactly ``security_known_hours`` before a change is known then: on
    SQLite the shifted bound once had three decimals and compared above the stored
    value it equals. (The device is the client's of long before, out of the change's
    window: so the login at the bound vouches, `vouch_hours`.)"""
    ingest(rt, "logins", login("IN-0", at=iso(timedelta(days=200)), ip=HOME_IP,
                               device_id="dev-x"),
           login("IN-1", at=iso(timedelta(hours=30)), ip=HOME_IP, device_id="dev-x"))
    ingest(rt, "security-events",
           security_event("SAVE", kind="address_added", address="bc1qpatient",
                          at=iso(timedelta(hours=29)), ip=HOME_IP, device_id="dev-x"))
    anomalies.analyze(rt, CRON)
    found = request(rt, "T1", address="bc1qpatient")  # from the client's own device
    assert "from the client's usual device and network" in found["security_change_hold"]


def _flag(rt: Runtime, login_ext: str, kind: str, severity: str) -> None:
    """A login finding on ``login_ext``, as the detectors would leave it."""
    with rt.transaction() as s:
        event = s.scalars(select(LoginEvent).where(LoginEvent.external_id == login_ext)).one()
        s.add(LoginAnomaly(kind=kind, severity=severity, score=1.0,
                           account_id=event.account_id, login_event_id=event.id,
                           at=event.at, source_ip=event.ip, source_asn=event.asn,
                           explanation=kind, details={}, detected_at=FIXED_NOW))


def test_the_accounts_recent_story_counts(rt: Runtime) -> None:
    """recent_anomalies: the account's other flagged logins in the 72 h before the
    request. Someone else's successful login weighs the rule's weight (fading after
    24 h); a burst of failures once, a quarter; novelty on the request's own network
    is left to the rules on the request's network."""
    ingest(rt, "logins",
           login("IN-1", at=iso(timedelta(hours=30)), ip="198.51.100.66", asn=64512),
           *(login(f"BF-{i}", at=iso(timedelta(hours=20, minutes=i)), success=False,
                   ip="198.51.100.77") for i in range(5)),
           login("NEWNET", at=iso(timedelta(hours=10)), ip="198.51.100.9", asn=64999))
    _flag(rt, "IN-1", "risky_login", "high")
    for i in range(5):
        _flag(rt, f"BF-{i}", "brute_force", "medium")
    _flag(rt, "NEWNET", "new_asn", "low")
    found = request(rt, "T1")  # from home, behind a login of its own
    story = found["recent_anomalies"]
    assert story.startswith("the account's other logins in the 72 h before were flagged: "
                            "risky_login (high) on login IN-1 from 198.51.100.66, 1 d 5 h "
                            "before (17.92)")
    assert "brute_force (medium) in failed login BF-" in story and "(and 4 more) (5)" in story
    assert "new_asn (low) on login NEWNET from 198.51.100.9, 9 h before (5)" in story
    # 29 h before the request: 20 x (1 - 5 / 48) = 17.92; then half of 5 and of 5.
    assert hit_scores(rt, "T1")["recent_anomalies"] == 22.92
    # A request from that network: NEWNET made it known to ip_not_seen and new_asn, so
    # its novelty counts here.
    mine = request(rt, "T2", ip="198.51.100.9", login_extra={"asn": 64999})
    assert "ip_not_seen" not in mine and "new_asn" not in mine
    assert "NEWNET" in mine["recent_anomalies"]
    # One login with several findings counts once, by the strongest.
    _flag(rt, "IN-1", "new_country", "medium")
    ingest(rt, "logins", login("T3-login", at=iso(timedelta(minutes=40))))
    ingest(rt, "withdrawals", withdrawal("T3", at=iso(timedelta(minutes=30)), amount="0.35",
                                         address=HOME_ADDRESS, available_balance="5",
                                         login_id="T3-login"))
    screening.screen(rt, CRON)
    assert "new_country" not in hits(rt, "T3")["recent_anomalies"]
