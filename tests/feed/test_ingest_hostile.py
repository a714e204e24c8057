"""A hostile platform feed (issue 16, part 4): whatever the bytes of one line, it is one
bad line with a short, inert reason; `skip_bad` writes every good line; strict mode
writes nothing and exits 2. On all three databases (the `runtime` fixture)."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from polysec_tui.db.models import (
    Account,
    Balance,
    ClientSession,
    LoginEvent,
    SecurityEvent,
    Withdrawal,
)
from polysec_tui.services.feed import ingest as ingest_module
from polysec_tui.services.feed.ingest import (
    MAX_REASON,
    IngestRejected,
    IngestReport,
    ingest_stream,
)
from polysec_tui.text import is_hidden
from tests.support import FIXED_NOW
from tests.support.feed import RBA_HEADER, rba_row, session_record
from tests.support.helpers import account, login, security_event, withdrawal

TABLES = {"accounts": Account, "logins": LoginEvent, "security-events": SecurityEvent,
          "withdrawals": Withdrawal, "sessions": ClientSession}


GOOD = {
    "accounts": lambda ext: account(ext),
    "logins": lambda ext: login(ext),
    "security-events": lambda ext: security_event(ext),
    "withdrawals": lambda ext: withdrawal(ext),
    "sessions": lambda ext: session_record(ext),
}


def line(record: dict[str, Any]) -> bytes:
    """One JSON line as Python's encoder writes it: every non-ASCII character and lone
    surrogate as a \\u escape."""
    return json.dumps(record).encode()


def with_raw(record: dict[str, Any], name: str, raw: str) -> bytes:
    """The record with field `name` set to the raw JSON text `raw` (any bytes)."""
    placeholder = "\x01PLACEHOLDER\x01"
    text = json.dumps({**record, name: placeholder})
    return text.replace(json.dumps(placeholder), raw).encode("utf-8", "surrogatepass")


def count(rt, model) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def feed(rt, kind: str, *lines: bytes, skip_bad: bool, fmt: str = "jsonl") -> IngestReport:
    return ingest_stream(rt, kind, io.BytesIO(b"".join(x + b"\n" for x in lines)),
                         fmt=fmt, skip_bad=skip_bad)


def assert_inert(report: IngestReport) -> None:
    for bad in report.bad:
        assert len(bad.reason) <= MAX_REASON, bad.reason
        # No control, bidi or invisible character (a backslash starts their escapes).
        assert not any(is_hidden(ch) and ch != "\\" for ch in bad.reason), bad.reason


def check_one_bad_line(rt, kind: str, hostile: bytes, reason: str) -> None:
    """Good, hostile, good: skip-bad writes both good lines and reports line 2 with
    `reason`; strict mode rejects the file (exit 2) and writes nothing."""
    if kind != "accounts":
        feed(rt, "accounts", line(account("A1")), skip_bad=False)
    before = count(rt, TABLES[kind])
    good = [line(GOOD[kind](f"G{i}")) for i in (1, 3)]
    with pytest.raises(IngestRejected) as err:
        feed(rt, kind, good[0], hostile, good[1], skip_bad=False)
    assert err.value.exit_code == 2
    report = err.value.report
    assert [b.line for b in report.bad] == [2], report.bad
    assert reason in report.bad[0].reason, report.bad[0].reason
    assert_inert(report)
    assert count(rt, TABLES[kind]) == before  # nothing written

    report = feed(rt, kind, good[0], hostile, good[1], skip_bad=True)
    assert report.written and report.inserted == 2
    assert [b.line for b in report.bad] == [2]
    assert reason in report.bad[0].reason
    assert_inert(report)
    assert count(rt, TABLES[kind]) == before + 2


DEEP = "[" * 1000 + "]" * 1000
HOSTILE: list[tuple[str, bytes, str]] = [
    # The three: deep nesting, a lone surrogate escape, a field of the wrong type.
    ("logins", with_raw(login("H"), "user_agent", DEEP), "not valid JSON (nested too deeply)"),
    ("logins", DEEP.encode(), "not valid JSON (nested too deeply)"),
    ("security-events", with_raw(security_event("H"), "details", '{"a":' + DEEP + "}"),
     "nested too deeply"),
    ("logins", line(login("H", user_agent="Mozilla\ud800")),
     "field 'user_agent' is not valid Unicode"),
    ("accounts", line(account("H", full_name="\udfff")), "field 'full_name' is not valid Unicode"),
    ("security-events", line(security_event("H", details={"k": "\ud800"})),
     "field 'details' is not valid Unicode"),
    ("security-events", line(security_event("H", kind=["password_change"])),
     "field 'kind' must be a string, not a list"),
    ("security-events", line(security_event("H", kind={"a": 1})), "not an object"),
    ("security-events", line(security_event("H", kind=7)), "not an integer"),
    # Bytes: an encoded surrogate, invalid UTF-8, a raw NUL, a NUL escape.
    ("logins", with_raw(login("H"), "city", '"\udcff"'), "not UTF-8"),
    ("logins", line(login("H")).replace(b"Berlin", b"Ber\xfflin"), "not UTF-8"),
    ("logins", line(login("H")).replace(b"Berlin", b"Ber\x00lin"), "not valid JSON"),
    ("logins", line(login("H", city="a\x00b")), "field 'city' contains a NUL"),
    ("withdrawals", line(withdrawal("H", address="bc1\x00")), "field 'address' contains a NUL"),
    # Numbers: beyond the parser, not finite, beyond a column, booleans as numbers.
    ("logins", with_raw(login("H"), "asn", "1" * 5000), "not valid JSON (a number too long"),
    ("logins", with_raw(login("H"), "lat", "1e999999"), "field 'lat' must be a number"),
    ("logins", with_raw(login("H"), "lat", "NaN"), "not valid JSON (NaN is not"),
    ("logins", with_raw(login("H"), "rtt_ms", "-Infinity"), "not valid JSON (-Infinity"),
    ("security-events", with_raw(security_event("H"), "details", '{"x": 1e999}'),
     "not finite"),
    ("logins", line(login("H", asn=2**63)), "field 'asn' must be an integer from 0"),
    ("logins", line(login("H", asn=True)), "not true or false"),
    ("logins", line(login("H", lat=True)), "field 'lat' must be a number"),
    ("logins", line(login("H", rtt_ms=1.5)), "field 'rtt_ms' must be an integer"),
    ("logins", line(login("H", success="yes")), "field 'success' must be true or false"),
    ("logins", line(login("H", success=1)), "field 'success' must be true or false"),
    # Wrong JSON types in every kind: strings where objects are expected and back.
    ("logins", line(login("H", id={"x": 1})), "field 'id' must be a string, not an object"),
    ("logins", line(login("H", id=["H"])), "field 'id' must be a string, not a list"),
    ("logins", line(login("H", account=["A1"])), "field 'account' must be a string, not a list"),
    ("logins", line(login("H", at=1700000000)), "field 'at' must be an ISO 8601 time string"),
    ("logins", line(login("H", ip=[1, 2, 3, 4])), "field 'ip' must be an IP address string"),
    ("logins", line(login("H", country=["DE"])), "field 'country' must be a two-letter"),
    ("logins", line(login("H", city={"name": "Berlin"})), "field 'city' must be a string"),
    ("logins", line(login("H", failure_reason=False)), "field 'failure_reason' must be"),
    ("accounts", line(account("H", email=["a@b.example"])), "field 'email' must be a string"),
    ("accounts", line(account("H", balances="BTC:1")), "field 'balances' must be an object"),
    ("accounts", line(account("H", balances={"BTC": ["1"]})), "balances.BTC"),
    ("accounts", line(account("H", balances={"BTC": True})), "balances.BTC"),
    ("accounts", line(account("H", date_of_birth=19850412)), "field 'date_of_birth' must be"),
    ("accounts", line(account("H", totp_secret={"s": 1})), "field 'totp_secret' must be"),
    ("accounts", line(account("H", created_at=None)), "field 'created_at' is required"),
    ("accounts", line(account("H", phone=4917012345)), "field 'phone' must be a string"),
    ("security-events", line(security_event("H", details="via web")),
     "field 'details' must be an object"),
    ("security-events", line(security_event("H", details=["web"])), "must be an object"),
    ("security-events", line(security_event("H", ip=True)), "field 'ip' must be"),
    ("withdrawals", line(withdrawal("H", amount=["0.25"])), "field 'amount' must be a decimal"),
    ("withdrawals", line(withdrawal("H", amount=True)), "field 'amount' must be a decimal"),
    ("withdrawals", line(withdrawal("H", available_balance={"v": "1"})),
     "field 'available_balance' must be a decimal"),
    ("withdrawals", line(withdrawal("H", asset=["BTC"])), "field 'asset' must be an asset code"),
    ("withdrawals", line(withdrawal("H", login_id=["L1"])), "field 'login_id' must be a string"),
    ("sessions", line(session_record("H", revoked_at=[1])), "field 'revoked_at' must be"),
    ("sessions", line(session_record("H", at=True)), "field 'at' must be an ISO 8601"),
    # Lines that are not objects.
    ("logins", b"[1, 2]", "expected a JSON object, not a list"),
    ("logins", b"42", "expected a JSON object, not an integer"),
    ("logins", b"null", "expected a JSON object"),
    ("logins", b'"a string"', "expected a JSON object, not a string"),
    # Over-long values (a column on MariaDB or PostgreSQL would refuse them).
    ("logins", line(login("H", user_agent="\U0001f600" * 513)),
     "field 'user_agent' is longer than 512"),
    ("withdrawals", line(withdrawal("H", address_label="x" * 129)), "longer than 128"),
    ("logins", line(login("H" * 65)), "field 'id' is longer than 64"),
    ("security-events", line(security_event("H", details={str(i): i for i in range(33)})),
     "at most 32 entries"),
    ("security-events", line(security_event("H", details={"a": "x" * 5000})),
     "larger than 4096 bytes"),
]


@pytest.mark.parametrize(("kind", "hostile", "reason"), HOSTILE,
                         ids=[f"{k}-{i}" for i, (k, _h, _r) in enumerate(HOSTILE)])
def test_a_hostile_line_is_one_bad_line(runtime, kind, hostile, reason):
    check_one_bad_line(runtime, kind, hostile, reason)


# --------------------------------------------------------------- wrongly accepted before

WRONGLY_ACCEPTED: list[tuple[str, dict[str, Any], str]] = [
    # Amounts: ASCII digits and one '.', nothing else.
    ("withdrawals", withdrawal("H", amount="\u0661\u0662"), "is not a decimal number"),
    ("withdrawals", withdrawal("H", amount="\uff11"), "is not a decimal number"),
    ("withdrawals", withdrawal("H", amount="1_000"), "is not a decimal number"),
    ("withdrawals", withdrawal("H", amount="1e3"), "is not a decimal number"),
    ("withdrawals", withdrawal("H", amount=" 1"), "is not a decimal number"),
    ("withdrawals", withdrawal("H", amount="+1"), "is not a decimal number"),
    ("withdrawals", withdrawal("H", amount="1."), "is not a decimal number"),
    ("withdrawals", withdrawal("H", amount=".5"), "is not a decimal number"),
    ("withdrawals", withdrawal("H", amount="-0"), "must be positive"),
    ("withdrawals", withdrawal("H", amount="0.000"), "must be positive"),
    ("withdrawals", withdrawal("H", amount="1" * 21), "exceeds 20 integer"),
    ("withdrawals", withdrawal("H", amount="1" * 5000), "exceeds 20 integer"),
    ("withdrawals", withdrawal("H", available_balance="\u0661"), "is not a decimal number"),
    ("accounts", account("H", balances={"BTC": "1_0"}), "field 'balances.BTC' is not a decimal"),
    ("accounts", account("H", balances={"btc!": "1"}), "field 'balances' must be an asset code"),
    # Scoped IPv6 literals (a zone names the platform host's interface).
    ("logins", login("H", ip="fe80::1%eth0"), "field 'ip' is a scoped IPv6 address"),
    ("withdrawals", withdrawal("H", ip="fe80::1%1"), "scoped IPv6"),
    ("sessions", session_record("H", ip="fe80::1%25eth0"), "scoped IPv6"),
    ("logins", login("H", ip="1.2.3.\u0664"), "field 'ip' is not an IP address"),
    # Unknown country codes.
    ("logins", login("H", country="XX"), "field 'country' must be a two-letter ISO 3166-1"),
    ("logins", login("H", country="EU"), "ISO 3166-1"),
    ("logins", login("H", country="\u00df"), "ISO 3166-1"),  # "ß".upper() == "SS"
    ("accounts", account("H", country="QQ"), "ISO 3166-1"),
    # Times before 2000 or more than a day ahead of the runtime's clock (FIXED_NOW).
    ("logins", login("H", at="1999-12-31T23:59:59Z"), "field 'at' is before 2000-01-01"),
    ("logins", login("H", at="1970-01-01T00:00:00Z"), "before 2000-01-01"),
    ("logins", login("H", at="0001-01-01T00:00:00+01:00"), "before 2000-01-01"),
    ("logins", login("H", at="9999-12-31T23:59:59-01:00"), "more than a day in the future"),
    ("logins", login("H", at=(FIXED_NOW + timedelta(days=1, seconds=1)).isoformat()),
     "field 'at' is more than a day in the future"),
    ("accounts", account("H", created_at="1999-01-01T00:00:00Z"), "field 'created_at' is before"),
    ("security-events", security_event("H", at="2030-01-01T00:00:00Z"), "in the future"),
    ("withdrawals", withdrawal("H", at="2000-01-01T00:59:59+01:00"), "field 'at' is before"),
    ("sessions", session_record("H", last_seen_at="2027-01-01T00:00:00Z"), "in the future"),
    # Sessions that end (or are seen) before they start.
    ("sessions", session_record("H", revoked_at="2026-11-20T07:59:59Z"),
     "field 'revoked_at' is before the session started"),
    ("sessions", session_record("H", last_seen_at="2026-11-20T07:00:00Z"),
     "field 'last_seen_at' is before the session started"),
    # Dates of birth in the future, or not YYYY-MM-DD.
    ("accounts", account("H", date_of_birth=(FIXED_NOW.date() + timedelta(days=1)).isoformat()),
     "field 'date_of_birth' is in the future"),
    ("accounts", account("H", date_of_birth="2025-W01-1"), "must be a date YYYY-MM-DD"),
    ("accounts", account("H", date_of_birth="19850412"), "must be a date YYYY-MM-DD"),
    # Ids: printable ASCII without spaces (keys shown to officers).
    ("logins", login("H\u202e"), "field 'id' must be printable ASCII"),
    ("logins", login("H 1"), "field 'id' must be printable ASCII"),
    ("withdrawals", withdrawal("H", login_id="L\x1b[2J"), "field 'login_id' must be printable"),
    ("accounts", account("\u0410\u0031"), "field 'id' must be printable ASCII"),  # Cyrillic A
    # TOTP secrets: "ß".upper() is "SS", which base32 accepts.
    ("accounts", account("H", totp_secret="\u00df" * 32,
                         totp_enrolled_at="2025-01-02T00:00:00Z"), "must be a base32"),
]


@pytest.mark.parametrize(("kind", "record", "reason"), WRONGLY_ACCEPTED,
                         ids=[f"{k}-{i}" for i, (k, _r, _s) in enumerate(WRONGLY_ACCEPTED)])
def test_values_accepted_before_are_bad_lines(runtime, kind, record, reason):
    check_one_bad_line(runtime, kind, line(record), reason)


def test_what_stays_valid_at_the_edges(runtime):
    """The bounds themselves are accepted, and stored as the detectors expect."""
    feed(runtime, "accounts", line(account("A1")), line(account(
        "A2", country="zz", date_of_birth=FIXED_NOW.date().isoformat(),
        created_at="2000-01-01T00:00:00Z", balances={"BTC": "0", "ETH": "00012.50"})),
        skip_bad=False)
    edge = (FIXED_NOW + timedelta(days=1)).isoformat()
    report = feed(
        runtime, "logins",
        line(login("L1", country="ZZ", ip="2001:DB8:0:0:0:0:0:1", at=edge)),
        line(login("L2", country="xk", ip="::ffff:192.0.2.1", at="2000-01-01T00:00:00Z")),
        line(login("L3", country=None, ip="fe80::1")),
        skip_bad=False)
    assert report.inserted == 3
    report = feed(runtime, "sessions",
                  line(session_record("S1", revoked_at="2026-11-20T08:00:00Z",
                                      last_seen_at="2026-11-20T08:00:00Z")), skip_bad=False)
    assert report.inserted == 1
    with runtime.sessions() as s:
        rows = {e.external_id: e for e in s.scalars(select(LoginEvent))}
        assert rows["L1"].country is None  # ZZ is unknown: no country, as the detectors read it
        assert rows["L1"].ip == "2001:db8::1"
        assert rows["L2"].country == "XK"
        assert s.scalar(select(Account.country).where(Account.external_id == "A2")) is None
        balances = dict(s.execute(select(Balance.asset, Balance.amount)).all())
        assert balances == {"BTC": Decimal(0), "ETH": Decimal("12.5")}


def test_values_at_the_columns_limits_are_stored_on_every_database(runtime):
    """What validation lets through, every database stores: the longest strings (astral
    characters too, utf8mb4 on MariaDB), the widest amounts, the deepest details."""
    feed(runtime, "accounts", line(account("A1")), skip_bad=False)
    widest = "9" * 20 + "." + "9" * 18
    nested: Any = "leaf \u00e9\U0001f600"
    for _ in range(8):  # MariaDB's JSON functions allow 32 levels
        nested = {"n": nested}
    assert feed(runtime, "logins", line(login(
        "L" * 64, user_agent="\U0001f600" * 512, city="\u00e9" * 128, device_id="d" * 128,
        asn=2**32 - 1, rtt_ms=10**7, lat=-90.0, lon=180)), skip_bad=False).inserted == 1
    assert feed(runtime, "withdrawals", line(withdrawal(
        "W1", amount=widest, available_balance="0." + "0" * 17 + "1",
        address="\U0001f600" * 128, login_id="L" * 64)), skip_bad=False).inserted == 1
    assert feed(runtime, "security-events", line(security_event(
        "S1", details=nested)), skip_bad=False).inserted == 1
    with runtime.sessions() as s:
        event = s.scalars(select(LoginEvent)).one()
        assert event.user_agent == "\U0001f600" * 512 and event.asn == 2**32 - 1
        assert s.scalars(select(Withdrawal.amount)).one() == Decimal(widest)
        assert s.scalars(select(SecurityEvent.details)).one() == nested
    deeper = {"n": nested}
    check_one_bad_line(runtime, "security-events", line(security_event("H", details=deeper)),
                       "field 'details' is nested deeper than 8 levels")


def test_duplicate_ids_inside_one_batch(runtime):
    report = feed(runtime, "accounts", line(account("A1")), line(account("A1")),
                  line(account("A2")), b"{bad", line(account("A2")), skip_bad=True)
    assert (report.inserted, report.duplicates, report.bad_count) == (2, 2, 1)
    report = feed(runtime, "logins", *[line(login(f"L{i % 3}")) for i in range(9)],
                  b"[]", line(login("L1", acct="A2")), skip_bad=True)
    assert (report.inserted, report.duplicates, report.bad_count) == (3, 7, 1)
    assert count(runtime, Account) == 2 and count(runtime, LoginEvent) == 3


def test_a_value_the_database_refuses_is_one_bad_line(runtime, monkeypatch):
    """The safety net under validation: should a value get past it that the database
    refuses (here an AS number beyond BIGINT, forced through), the batch is retried row
    by row in savepoints and only that row is a bad line, on every engine."""
    parse = ingest_module.PARSERS["logins"]

    def leaky(obj, window):
        parsed = parse(obj, window)
        if parsed["external_id"] == "L2":
            parsed["asn"] = 2**70
        return parsed

    monkeypatch.setitem(ingest_module.PARSERS, "logins", leaky)
    feed(runtime, "accounts", line(account("A1")), skip_bad=False)
    lines = [line(login(f"L{i}")) for i in range(1, 5)]
    with pytest.raises(IngestRejected) as err:
        feed(runtime, "logins", *lines, skip_bad=False)
    assert [b.line for b in err.value.report.bad] == [2]
    assert err.value.report.bad[0].reason.startswith("refused by the database (")
    assert_inert(err.value.report)
    assert count(runtime, LoginEvent) == 0
    report = feed(runtime, "logins", *lines, skip_bad=True)
    assert (report.inserted, report.duplicates, report.bad_count) == (3, 0, 1)
    with runtime.sessions() as s:
        assert sorted(s.scalars(select(LoginEvent.external_id))) == ["L1", "L3", "L4"]


def test_ids_that_a_collation_folds_together(runtime):
    """MariaDB compares ids without case (utf8mb4_general_ci): there "a1" is the stored
    "A1", and the insert is refused. One bad line, never a failed ingest."""
    report = feed(runtime, "accounts", line(account("A1")), line(account("a1")),
                  line(account("B1")), skip_bad=True)
    folded = runtime.engine.dialect.name in {"mysql", "mariadb"}
    assert report.inserted == (2 if folded else 3)
    assert [b.line for b in report.bad] == ([2] if folded else [])
    report = feed(runtime, "accounts", line(account("b1")), line(account("C1")), skip_bad=True)
    assert report.inserted + report.duplicates + report.bad_count == 2
    assert count(runtime, Account) == (3 if folded else 5)


def test_hostile_rows_of_the_rba_csv(runtime):
    good = [rba_row("1"), rba_row("3", user="8"), rba_row("99", rtt="", asn="")]
    hostile: list[tuple[str | bytes, str]] = [
        (rba_row("2").encode().replace(b"Mozilla", b"Mo\xffzilla"), "not UTF-8"),
        (rba_row("4", agent='"Mozilla, unclosed'), "expected 16 columns, found 10"),
        (rba_row("5", asn="inf"), "field 'asn' must be an integer"),
        (rba_row("6", rtt="1e999"), "field 'rtt_ms' must be an integer"),
        (rba_row("7", asn="99999999999999999999"), "field 'asn' must be an integer from 0"),
        (rba_row("8", rtt="\u0661\u0662"), "field 'rtt_ms' must be an integer"),
        (rba_row("9", success="maybe"), "field 'success' must be true or false"),
        (rba_row("10", attack="1"), "column 'Is Attack IP' must be True or False"),
        (rba_row("11", country="XX"), "field 'country' must be a two-letter ISO 3166-1"),
        (rba_row("12", stamp="1999-02-03 12:43:30"), "field 'at' is before 2000-01-01"),
        (rba_row("13", agent="Mo\x00zilla"), "field 'user_agent' contains a NUL"),
        (rba_row("14", ip="fe80::1%eth0"), "scoped IPv6"),
        (rba_row("15", user="x" * 70), "field 'account' is longer than 64"),
        (rba_row("16", stamp="\x1b]52;c;AAAA\x07"), "field 'at' is not an ISO 8601 time"),
        ("1,2,3", "expected 16 columns, found 3"),
    ]
    rows = [good[0].encode(), *[h if isinstance(h, bytes) else h.encode() for h, _ in hostile],
            good[1].encode(), good[2].encode()]
    data = RBA_HEADER.encode() + b"\n" + b"\n".join(rows) + b"\n"
    with pytest.raises(IngestRejected) as err:
        ingest_stream(runtime, "logins", io.BytesIO(data), fmt="rba-csv")
    assert count(runtime, LoginEvent) == 0 and count(runtime, Account) == 0
    report = ingest_stream(runtime, "logins", io.BytesIO(data), fmt="rba-csv", skip_bad=True)
    assert report.inserted == 3 and report.bad_count == len(hostile)
    for bad, (_row, reason) in zip(report.bad, hostile, strict=True):
        assert reason in bad.reason, (bad, reason)
    assert_inert(report)
    assert [b.line for b in err.value.report.bad] == [b.line for b in report.bad]
    with runtime.sessions() as s:
        stored = set(s.scalars(select(LoginEvent.external_id)))
    assert stored == {"rba-1", "rba-3", "rba-99"}


def test_the_command_exits_2_or_0_and_writes_inert_text(cli_env, runtime):
    """Through the real `polysec ingest` process: never exit 70; strict exits 2 with
    nothing written, --skip-bad exits 0 with the good lines written; every line on
    stderr is one bad line whose quoted input cannot act on the terminal."""
    from tests.support.cli import run_process

    feed(runtime, "accounts", line(account("A1")), skip_bad=False)
    hostile = [
        with_raw(security_event("H1"), "details", '{"a":' + DEEP + "}"),
        line(security_event("H2", device_id="dev\ud800")),
        line(security_event("H3", kind=["password_change"])),
        line(security_event("H4", kind="\x1b]52;c;AAAA\x07\x1b[2J\u202e" + "x" * 500)),
        with_raw(security_event("H5"), "details", '{"n": ' + "9" * 5000 + "}"),
        b"\xff\xfe\x00",
    ]
    data = b"\n".join([line(security_event("G1")), *hostile, line(security_event("G2"))])
    strict = run_process("ingest", "security-events", "-", env=cli_env, stdin=data)
    assert strict.code == 2, strict.err
    lines = strict.err.splitlines()
    assert [x.split(":")[0] for x in lines[:-1]] == [f"line {n}" for n in range(2, 8)]
    assert lines[-1].startswith("polysec: error: 6 bad line(s) in security-events input")
    assert count(runtime, SecurityEvent) == 0
    for text in (strict.err, strict.out):
        assert not any(is_hidden(ch) and ch not in "\\\n" for ch in text), text
    assert max(len(x) for x in lines) < 400

    skip = run_process("ingest", "security-events", "-", "--skip-bad", "--json",
                       env=cli_env, stdin=data)
    assert skip.code == 0, skip.err
    report = json.loads(skip.out)
    assert (report["inserted"], report["bad_count"], report["written"]) == (2, 6, True)
    assert "\\x1b]52" in report["bad"][3]["reason"]
    assert not any(is_hidden(ch) and ch not in "\\\n" for ch in skip.err + skip.out)
    assert count(runtime, SecurityEvent) == 2
