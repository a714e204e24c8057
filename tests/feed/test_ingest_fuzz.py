"""A seeded fuzz of ingest (issue 16, part 4): valid lines of every kind, and of the RBA
CSV, mutated at random (a field given a value of another JSON type, a non-finite or
huge number, deep nesting, control and invisible characters, a lone surrogate, an
over-long string, a deleted field; bytes flipped, inserted, cut) between untouched
ones. The property, on SQLite: ingest with skip_bad never raises, every untouched line
is written, every line is counted once (inserted, duplicate or bad), every reason is
short and inert, and validation (not the database) caught every bad value; strict mode
raises IngestRejected (exit 2), writes nothing and names the same lines.

Without hypothesis (not a dependency): `random.Random(seed)`, so a failure is
reproduced by its seed. POLYSEC_FUZZ_SEEDS=200 runs more seeds than the default 4."""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import Account, ClientSession, LoginEvent, SecurityEvent, Withdrawal
from polysec_tui.services.feed.ingest import (
    MAX_REASON,
    Ingestor,
    IngestRejected,
    IngestReport,
    ingest_stream,
)
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import is_hidden
from tests.support import FIXED_NOW
from tests.support.feed import RBA_HEADER, rba_row, session_record
from tests.support.helpers import account, login, security_event, withdrawal

SEEDS = range(int(os.environ.get("POLYSEC_FUZZ_SEEDS", "4")))
TABLES: dict[str, Any] = {"accounts": Account, "logins": LoginEvent,
                          "security-events": SecurityEvent, "withdrawals": Withdrawal,
                          "sessions": ClientSession}
GOOD: dict[str, Callable[[str], dict[str, Any]]] = {
    "accounts": lambda ext: account(ext, balances={"BTC": "0.5"},
                                    totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                                    totp_enrolled_at="2025-01-02T00:00:00Z"),
    "logins": lambda ext: login(ext, region="Berlin", browser="Firefox", os="Linux",
                                device_type="desktop", rtt_ms=40,
                                failure_reason=None),
    "security-events": lambda ext: security_event(ext, ip="2001:db8::1", device_id="dev-1",
                                                  details={"via": "web", "n": [1, 2.5]}),
    "withdrawals": lambda ext: withdrawal(ext, available_balance="1.5", address_label="cold",
                                          device_id="dev-1", login_id="L1"),
    "sessions": lambda ext: session_record(ext, device_id="dev-1",
                                           revoked_at="2026-11-20T10:00:00Z",
                                           revoked_reason="logout"),
}

DEEP_LIST: Any = []
for _ in range(40):
    DEEP_LIST = [DEEP_LIST]
DEEP_OBJECT: Any = "leaf"
for _ in range(40):
    DEEP_OBJECT = {"k": DEEP_OBJECT}

# Python values (json.dumps writes them) and raw JSON texts, of every type and edge.
VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 1.5, -0.0, 1e308, 2**31, 2**63, 2**64, -(2**63) - 1,
    10**40, "", " ", "0", "-1", "1.5", "x" * 600, "\U0001f600" * 300, "\x00", "a\x00b",
    "\ud800", "x\udfff", "\u202eevil", "\x1b[2J\x1b]52;c;AAAA\x07", "\u200b", "\x85",
    "\u0661\u0662", "1_000", "1e5", "+1", "NaN", "Infinity", "fe80::1%eth0", "::1",
    "999.1.1.1", "XX", "ZZ", "de", "\u00df", "BTC", "btc", "2026-11-20T10:00:00Z",
    "2026-11-20T10:00:00", "1999-12-31T23:59:59Z", "2999-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-11-20", "2026-W47-5",
    "password_change", "A1", "G1", [], [1, "a"], {}, {"a": {"b": []}}, DEEP_LIST,
    DEEP_OBJECT, ["x"] * 100, {str(i): i for i in range(40)},
]
RAW: list[str] = [
    "NaN", "Infinity", "-Infinity", "1e999999", "-1e999999", "1" * 5000, "-" + "9" * 4301,
    "[" * 3000 + "]" * 3000, '{"a":' * 1200 + "1" + "}" * 1200, '"\\ud800"', '"\\udc00x"',
    '"\\u0000"', '"\\ud83d\\ude00"', "1.0e-400", "0.1e1", "true", "null",
]
NOT_OBJECTS = [b"[]", b"[1, 2]", b"42", b"-0.5", b"null", b"true", b'"text"', b"{}",
               b"\xef\xbb\xbf{}", b"\x00", b"{\x00}", b"\xff\xfe{\x00}\x00"]
BYTES = [b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x1b", b"\r",
         b'"', b"\\", b"{", b"}", b"[", b",", b":", b"\xe2\x80\xae", b"\xc0\xaf"]


def _raw_field(record: dict[str, Any], name: str, raw: str) -> bytes:
    placeholder = "\x01RAW\x01"
    text = json.dumps({**record, name: placeholder})
    return text.replace(json.dumps(placeholder), raw).encode("utf-8", "surrogatepass")


def mutate(rng: random.Random, record: dict[str, Any]) -> bytes:
    """One hostile line made from a valid record."""
    record = dict(record)
    names = [*record, "unknown_field"]
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        name = rng.choice(names)
        if op < 0.45:
            record[name] = rng.choice(VALUES)
        elif op < 0.55:
            record.pop(name, None)
        elif op < 0.65:
            return _raw_field(record, name, rng.choice(RAW))
        elif op < 0.7:
            return rng.choice(NOT_OBJECTS)
        else:
            data = bytearray(json.dumps(record).encode("utf-8", "surrogatepass"))
            where = rng.randrange(len(data) + 1)
            kind = rng.random()
            if kind < 0.4:
                data[where:where] = rng.choice(BYTES)
            elif kind < 0.7 and data:
                data[min(where, len(data) - 1)] = rng.choice(range(256))
            else:
                del data[where:]
            return bytes(data).replace(b"\n", b" ")
    return json.dumps(record).encode("utf-8", "surrogatepass")


@pytest.fixture
def sqlite_runtime(tmp_path: Path) -> Iterator[Runtime]:
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    keyring = tmp_path / "keyring.json"
    write_new_keyring(keyring, Keyring.generate(now=FIXED_NOW))
    rt = Runtime(Settings(db_url=url, keyring_path=keyring), engine, load_keyring(keyring),
                 clock=lambda: FIXED_NOW)
    yield rt
    engine.dispose()


def count(rt: Runtime, model: Any) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def check_report(report: IngestReport) -> None:
    assert report.written
    assert report.inserted + report.duplicates + report.bad_count == report.lines
    for bad in report.bad:
        assert len(bad.reason) <= MAX_REASON, bad
        assert not any(is_hidden(ch) and ch != "\\" for ch in bad.reason), bad
        # Validation caught it: the database's refusal is only the safety net.
        assert not bad.reason.startswith("refused by the database"), bad


def run_both_modes(rt: Runtime, kind: str, data: bytes, model: Any,
                   fmt: str = "jsonl") -> IngestReport:
    before = count(rt, model)
    try:
        strict: IngestReport | None = ingest_stream(rt, kind, io.BytesIO(data), fmt=fmt)
    except IngestRejected as exc:
        assert exc.exit_code == 2
        strict = None
        strict_lines = [b.line for b in exc.report.bad]
        assert count(rt, model) == before  # nothing written
    report = ingest_stream(rt, kind, io.BytesIO(data), fmt=fmt, skip_bad=True)
    check_report(report)
    if strict is None:
        assert strict_lines == [b.line for b in report.bad]
    else:
        assert report.bad_count == 0 and report.inserted == 0  # all written by strict
    return report


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", list(TABLES))
def test_fuzzed_lines_never_stop_an_ingest(sqlite_runtime, kind, seed):
    rt = sqlite_runtime
    rng = random.Random(f"{kind}/{seed}")
    if kind != "accounts":
        ingest_stream(rt, "accounts", io.BytesIO(json.dumps(account("A1")).encode()))
    lines: list[bytes] = []
    good: list[str] = []
    for i in range(150):
        if rng.random() < 0.4:
            good.append(f"G{i}")
            lines.append(json.dumps(GOOD[kind](f"G{i}")).encode())
        else:
            lines.append(mutate(rng, GOOD[kind](f"M{i}")))
    model = TABLES[kind]
    run_both_modes(rt, kind, b"\n".join(lines) + b"\n", model)
    with rt.sessions() as s:
        stored = set(s.scalars(select(model.external_id)))
    assert set(good) <= stored


def test_fuzzed_records_from_python_callers(sqlite_runtime):
    """The same through `Ingestor.run` with Python objects no JSON parser makes (the
    path of the demo and the simulator): every field's type is checked all the same."""
    rt = sqlite_runtime
    ingest_stream(rt, "accounts", io.BytesIO(json.dumps(account("A1")).encode()))
    odd = [float("nan"), float("inf"), Decimal("1.5"), b"bytes", (1, 2), {1, 2}, object(),
           {1: "int key"}, ["\ud800"], {"k": float("nan")}, {"k": b"x"}, 10**5000]
    rng = random.Random(7)
    for kind in TABLES:
        records: list[Any] = []
        good: list[str] = []
        for i in range(120):
            record = GOOD[kind](f"P{i}")
            if rng.random() < 0.5:
                good.append(f"P{i}")
            else:
                record[rng.choice([*record, "details"])] = rng.choice(odd + VALUES)
            records.append(record)
        records += [["not", "a", "dict"], 42, None]
        report = Ingestor(rt, kind, skip_bad=True).run(enumerate(records, 1))
        check_report(report)
        with rt.sessions() as s:
            stored = set(s.scalars(select(TABLES[kind].external_id)))
        assert set(good) <= stored


CSV_VALUES = ["", "inf", "nan", "1e999", "-1", "\u0661\u0662", "x" * 200, "\x00", '"',
              '"unclosed', ",", "True", "maybe", "fe80::1%eth0", "XX", "ZZ",
              "1999-01-01 00:00:00", "9999-12-31 23:59:59", "\u202e", "\x1b[2J", " ",
              "99999999999999999999999", "2020-02-03T12:43:30Z", "rba"]


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzzed_rba_csv_rows_never_stop_an_ingest(sqlite_runtime, seed):
    rt = sqlite_runtime
    rng = random.Random(f"rba/{seed}")
    rows: list[bytes] = [RBA_HEADER.encode()]
    good: list[str] = []
    for i in range(150):
        fields = rba_row(str(i), user=str(rng.randrange(20))).split(",")
        if rng.random() < 0.4:
            good.append(f"rba-{i}")
            rows.append(",".join(fields).encode())
            continue
        if rng.random() < 0.7:
            fields[rng.randrange(1, len(fields))] = rng.choice(CSV_VALUES)
            rows.append(",".join(fields).encode().replace(b"\n", b" "))
        else:
            data = bytearray(",".join(fields).encode())
            where = rng.randrange(len(data) + 1)
            data[where:where] = rng.choice(BYTES)
            rows.append(bytes(data).replace(b"\n", b" "))
    run_both_modes(rt, "logins", b"\n".join(rows) + b"\n", LoginEvent, fmt="rba-csv")
    with rt.sessions() as s:
        stored = set(s.scalars(select(LoginEvent.external_id)))
    assert set(good) <= stored
