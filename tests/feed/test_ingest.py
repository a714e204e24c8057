"""`polysec ingest`: formats, idempotency, strict and skip-bad modes, on all databases."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from polysec_tui.db.models import (
    Account,
    Balance,
    DemoScenarioEvent,
    LoginEvent,
    SecurityEvent,
    TotpEnrolment,
    Withdrawal,
)
from polysec_tui.services.clients.accounts import decrypt_pii
from polysec_tui.services.feed.ingest import MAX_LINE_BYTES, IngestRejected, ingest_stream
from tests.support.helpers import account, ingest, login, security_event, withdrawal


def count(rt, model) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def test_accounts_are_stored_encrypted_with_balances_and_totp(runtime):
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    report = ingest(runtime, "accounts",
                    account("A1", balances={"BTC": "1.5", "ETH": "0.000000000000000001"},
                            totp_secret=secret, totp_enrolled_at="2025-01-02T00:00:00Z"),
                    account("A2", country="fr"))
    assert (report.inserted, report.duplicates, report.written) == (2, 0, True)
    with runtime.sessions() as s:
        a1 = s.scalars(select(Account).where(Account.external_id == "A1")).one()
        pii = decrypt_pii(runtime, a1)
        assert pii.email == "a1.doe@example.com" and pii.full_name == "Jane A1 Doe"
        assert pii.date_of_birth == "1985-04-12"
        balances = {b.asset: b.amount for b in s.scalars(select(Balance))}
        assert balances == {"BTC": Decimal("1.5"), "ETH": Decimal("0.000000000000000001")}
        enrolment = s.scalars(select(TotpEnrolment)).one()
        assert runtime.cipher.decrypt(enrolment.secret_enc, table="totp_enrolments",
                                      column="secret", row_id=enrolment.id) == secret
        assert s.scalars(select(Account.country).where(Account.external_id == "A2")).one() == "FR"


def test_events_of_every_kind(runtime):
    ingest(runtime, "accounts", account("A1"))
    assert ingest(runtime, "logins", login("L1", at="2026-11-20T11:00:00+01:00")).inserted == 1
    assert ingest(runtime, "security-events",
                  security_event("S1", details={"via": "web"})).inserted == 1
    big = "12345678901234567890.123456789012345678"
    report = ingest(runtime, "withdrawals",
                    withdrawal("W1", amount=big, available_balance="99999999999999999999"))
    assert report.inserted == 1
    with runtime.sessions() as s:
        event = s.scalars(select(LoginEvent)).one()
        assert event.at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # stored as UTC
        assert (event.asn, event.city, event.latitude) == (3320, "Berlin", 52.52)
        w = s.scalars(select(Withdrawal)).one()
        assert w.amount == Decimal(big)  # exact, not a float
        assert w.status == "pending"
        assert s.scalars(select(SecurityEvent.details)).one() == {"via": "web"}


def test_ingest_is_idempotent_on_external_id(runtime):
    ingest(runtime, "accounts", account("A1"))
    first = ingest(runtime, "logins", login("L1"), login("L2"), login("L1"))
    assert (first.inserted, first.duplicates) == (2, 1)
    again = ingest(runtime, "logins", login("L1"), login("L2"), login("L3"))
    assert (again.inserted, again.duplicates) == (1, 2)
    assert count(runtime, LoginEvent) == 3
    assert ingest(runtime, "accounts", account("A1")).duplicates == 1
    assert count(runtime, Account) == 1


def test_strict_mode_rejects_the_whole_file(runtime):
    ingest(runtime, "accounts", account("A1"))
    with pytest.raises(IngestRejected) as err:
        ingest(runtime, "logins", login("L1"), "{not json", login("L3", account="nobody"),
               login("L4", at="2026-11-20T10:00:00"), login("L5"))
    report = err.value.report
    assert [(b.line, b.reason) for b in report.bad] == [
        (2, "not valid JSON (Expecting property name enclosed in double quotes at character 2)"),
        (3, "unknown account 'nobody'"),
        (4, "field 'at' has no time zone (add Z or +00:00): '2026-11-20T10:00:00'"),
    ]
    assert "nothing written" in str(err.value) and "line 2" in str(err.value)
    assert err.value.exit_code == 2
    assert count(runtime, LoginEvent) == 0


def test_skip_bad_writes_the_good_lines(runtime):
    ingest(runtime, "accounts", account("A1"))
    report = ingest(runtime, "logins", login("L1"), "[1, 2]", login("L3"), skip_bad=True)
    assert report.written and report.inserted == 2
    assert [(b.line, b.reason) for b in report.bad] == [(2, "expected a JSON object, not a list")]
    assert count(runtime, LoginEvent) == 2


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (withdrawal("W1", amount=0.25), "field 'amount' must be a decimal string"),
        (withdrawal("W1", amount="-1"), "field 'amount' must be positive"),
        (withdrawal("W1", amount="NaN"), "field 'amount' must be finite"),
        (withdrawal("W1", amount="0.0000000000000000001"), "fractional digits"),
        (withdrawal("W1", asset="btc!"), "field 'asset' must be an asset code"),
        (withdrawal("W1", ip="999.1.1.1"), "field 'ip' is not an IP address"),
        (withdrawal("W1", at="yesterday"), "field 'at' is not an ISO 8601 time"),
        ({"id": "W1", "account": "A1"}, "field 'at' is required"),
        (withdrawal("W1", address="x" * 129), "field 'address' is longer than 128 characters"),
        (withdrawal("W1", address_label="a\x00b"), "field 'address_label' contains a NUL"),
    ],
)
def test_bad_withdrawal_fields_are_named(runtime, record, reason):
    ingest(runtime, "accounts", account("A1"))
    with pytest.raises(IngestRejected) as err:
        ingest(runtime, "withdrawals", record)
    assert reason in err.value.report.bad[0].reason
    assert count(runtime, Withdrawal) == 0


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (security_event("S1", kind="address_added"), "field 'address' is required"),
        (security_event("S1", kind="password_change", address="bc1qx"),
         "field 'address' is only for address-book events"),
        (security_event("S1", kind="address_removed", address="x" * 129),
         "field 'address' is longer than 128 characters"),
    ],
)
def test_address_book_events_name_their_address(runtime, record, reason):
    ingest(runtime, "accounts", account("A1"))
    with pytest.raises(IngestRejected) as err:
        ingest(runtime, "security-events", record)
    assert reason in err.value.report.bad[0].reason
    assert count(runtime, SecurityEvent) == 0


def test_bad_account_fields(runtime):
    cases = [
        (account("A1", email="not-an-email"), "field 'email' is not an email address"),
        (account("A1", totp_secret="JBSWY3DP"), "at least 160 bits"),
        (account("A1", totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
         "field 'totp_enrolled_at' is required"),
        (account("A1", country="Germany"), "two-letter"),
        (account("A1", balances={"BTC": 1.5}), "field 'balances.BTC' must be a decimal string"),
    ]
    for record, reason in cases:
        with pytest.raises(IngestRejected) as err:
            ingest(runtime, "accounts", record)
        assert reason in err.value.report.bad[0].reason
    assert count(runtime, Account) == 0


def test_a_ten_megabyte_field_is_one_bad_line(runtime):
    ingest(runtime, "accounts", account("A1"))
    huge = login("L2", user_agent="A" * 10_000_000)
    with pytest.raises(IngestRejected) as err:
        ingest(runtime, "logins", login("L1"), huge, login("L3"))
    assert [(b.line, b.reason) for b in err.value.report.bad] == [
        (2, f"line longer than {MAX_LINE_BYTES} bytes")
    ]
    report = ingest(runtime, "logins", login("L1"), huge, login("L3"), skip_bad=True)
    assert report.inserted == 2  # the line after the long one is read correctly


def test_rba_csv_layout(runtime):
    header = ("index,Login Timestamp,User ID,Round-Trip Time [ms],IP Address,Country,Region,"
              "City,ASN,User Agent String,Browser Name and Version,OS Name and Version,"
              "Device Type,Login Successful,Is Attack IP,Is Account Takeover\n")
    rows = (
        "0,2020-02-03 12:43:30.772,-4324475583306591935,,10.0.65.171,NO,-,-,29695,"
        "\"Mozilla/5.0  (iPhone; CPU iPhone OS 13_4 like Mac OS X)\",Firefox 20.0.0.1618,"
        "iOS 13.4,mobile,False,False,False\n"
        "1,2020-02-03 12:43:43.549,-4324475583306591935,,10.0.65.171,NO,-,-,29695,"
        "Mozilla/5.0,Firefox 20.0.0.1618,iOS 13.4,mobile,True,False,True\n"
        "2,2020-02-03 12:43:55.873,7,682,10.0.65.172,US,Virginia,Ashburn,14618,"
        "Mozilla/5.0,Chrome 79.0,Windows 10,desktop,True,True,False\n"
    )
    data = io.BytesIO((header + rows).encode())
    report = ingest_stream(runtime, "logins", data, fmt="rba-csv")
    assert (report.inserted, report.bad_count) == (3, 0)
    with runtime.sessions() as s:
        events = s.scalars(select(LoginEvent).order_by(LoginEvent.at)).all()
        assert [e.success for e in events] == [False, True, True]
        assert events[0].at == datetime(2020, 2, 3, 12, 43, 30, 772000, tzinfo=UTC)
        assert events[2].rtt_ms == 682 and events[2].city == "Ashburn"
        assert count(runtime, Account) == 2
        labels = {(sid, ext) for sid, ext in s.execute(
            select(DemoScenarioEvent.scenario_id, DemoScenarioEvent.external_id))}
        assert labels == {(9002, "rba-1"), (9001, "rba-2")}
    again = ingest_stream(runtime, "logins", io.BytesIO((header + rows).encode()), fmt="rba-csv")
    assert (again.inserted, again.duplicates) == (0, 3)


def test_rba_csv_with_the_wrong_layout(runtime):
    with pytest.raises(IngestRejected, match="not the RBA login layout"):
        ingest_stream(runtime, "logins", io.BytesIO(b"a,b\n1,2\n"), fmt="rba-csv")
