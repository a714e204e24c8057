"""`polysec ingest`: JSON Lines (and the RBA login CSV) into the platform tables.

Streamed and batched: memory stays flat in the input size, and each batch is a handful of
statements (look up accounts, look up existing ids, one multi-row insert). Idempotent on
each event's external id. The whole file is one transaction: with ``strict`` any bad line
rolls everything back; with ``skip_bad`` the good lines are written and the bad listed.

The feed is hostile input: whatever the bytes of a line, it is either a record or one
bad line with a short reason (reading: `read_jsonl`, `read_rba_csv`; fields:
`services.records`). Each batch is written so that it can be undone (a savepoint, or on
SQLite a delete of its own new rows): should a database still refuse a value (a
collation that folds two ids together, say), the batch is undone and retried row by
row, so that the refused row too is one bad line, never a failed ingest.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import IO, Any, Protocol, TypeGuard, cast

from sqlalchemy import Connection, Dialect, Table, delete, func, insert, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session

from polysec_tui.db.models import (
    Account,
    AnalysisCheckpoint,
    AssetPrice,
    Balance,
    ClientSession,
    DemoScenario,
    DemoScenarioEvent,
    LoginEvent,
    SecurityEvent,
    TotpEnrolment,
    Withdrawal,
)
from polysec_tui.errors import InputError
from polysec_tui.services.feed import parallel
from polysec_tui.services.feed import records as r
from polysec_tui.services.feed.parallel import Prepared
from polysec_tui.services.feed.records import BadRecord, Window, quote
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import is_hidden, visible

KINDS = ("accounts", "logins", "security-events", "withdrawals", "sessions", "prices")
MAX_LINE_BYTES = 64 * 1024
BATCH_SIZE = 5000
MAX_REPORTED_BAD = 50
MAX_REASON = 240  # characters of one bad line's reason
# SQLite page cache for the ingesting connection (KiB): the random-order indexes of
# login_events (account, ip, device) thrash the default 2 MiB cache on large files. With
# 128 MiB, 1,000,000 logins went in at 41,000 a second and 3,000,000 at 24,000; with 512,
# at 45,000 and 39,000 (docs/PERFORMANCE.md). SQLite fills it as it reads pages, so a
# small file takes little; bounded, so memory stays flat in the input size (about 700
# MiB at most); restored when the ingest ends.
SQLITE_INGEST_CACHE_KIB = 512 * 1024


class _NotJson(ValueError):
    """NaN, Infinity or -Infinity: Python's json reads them, JSON has no such values."""


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


_json_decode = json.JSONDecoder(parse_constant=_no_constant).decode

SECURITY_EVENT_KINDS = frozenset(
    {
        "password_change",
        "password_reset",
        "2fa_enabled",
        "2fa_disabled",
        "2fa_change",
        "2fa_reset",
        "new_device",
        "email_change",
        "phone_change",
        "api_key_created",
        "api_key_revoked",
        *("address_added", "address_whitelisted", "address_removed"),
    }
)
# The address book's changes: the only security events that name a destination.
ADDRESS_BOOK_KINDS = frozenset({"address_added", "address_whitelisted", "address_removed"})


@dataclass
class BadLine:
    line: int
    reason: str


def inert_reason(reason: str) -> str:
    """A reason as reported: hidden characters shown as escapes (reasons quote input
    through `records.quote` already; this holds for any other text too) and at most
    MAX_REASON characters."""
    if not (reason.isascii() and reason.isprintable()):
        reason = "".join(visible(ch) if is_hidden(ch) else ch for ch in reason)
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    return reason


@dataclass
class IngestReport:
    kind: str
    lines: int = 0
    inserted: int = 0
    duplicates: int = 0
    bad_count: int = 0
    bad: list[BadLine] = field(default_factory=list)
    written: bool = False

    def add_bad(self, line: int, reason: str) -> None:
        self.bad_count += 1
        if len(self.bad) < MAX_REPORTED_BAD:
            self.bad.append(BadLine(line, inert_reason(reason)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "lines": self.lines,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "bad_count": self.bad_count,
            "bad": [{"line": b.line, "reason": b.reason} for b in self.bad],
            "written": self.written,
        }


class IngestRejected(InputError):
    """Strict mode found bad lines: nothing was written."""

    def __init__(self, report: IngestReport) -> None:
        first = report.bad[0]
        super().__init__(
            f"{report.bad_count} bad line(s) in {report.kind} input, nothing written "
            f"(first: line {first.line}: {first.reason})"
        )
        self.report = report


# ----------------------------------------------------------------------------- reading


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) for each line, or (line number, None) for a line longer than
    MAX_LINE_BYTES (skipped), never holding more than one bounded line in memory."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES:
            while line and not line.endswith(b"\n"):  # skip the rest of the long line
                line = stream.readline(MAX_LINE_BYTES)
            yield number, None
            continue
        yield number, line


def read_jsonl(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yield (line number, object) or (line number, reason) for each non-blank line.
    Strict UTF-8 (an encoded surrogate is not UTF-8) and strict JSON: no NaN or
    Infinity; nesting beyond the parser's depth or an integer beyond its 4,300 digits is
    a bad line, not an error."""
    for number, line in _lines(stream):
        if line is None:
            yield number, f"line longer than {MAX_LINE_BYTES} bytes"
            continue
        if not line.strip():
            continue
        try:
            if line.startswith(codecs.BOM_UTF8):
                line = line[3:]
            obj = _json_decode(line.decode("utf-8"))
        except UnicodeDecodeError:
            yield number, "not UTF-8"
            continue
        except json.JSONDecodeError as exc:
            yield number, f"not valid JSON ({exc.msg} at character {exc.pos + 1})"
            continue
        except _NotJson as exc:
            yield number, f"not valid JSON ({exc})"
            continue
        except RecursionError:
            yield number, "not valid JSON (nested too deeply)"
            continue
        except ValueError:  # int(): more digits than sys.get_int_max_str_digits()
            yield number, "not valid JSON (a number too long to read)"
            continue
        if type(obj) is not dict:
            yield number, f"expected a JSON object, not {r.json_type(obj)}"
            continue
        yield number, obj


RBA_COLUMNS = (
    "Login Timestamp",
    "User ID",
    "Round-Trip Time [ms]",
    "IP Address",
    "Country",
    "Region",
    "City",
    "ASN",
    "User Agent String",
    "Browser Name and Version",
    "OS Name and Version",
    "Device Type",
    "Login Successful",
    "Is Attack IP",
    "Is Account Takeover",
)


def _csv_row(line: bytes) -> list[str] | str:
    """One CSV record from one physical line (the dataset has no line breaks inside
    fields), or the reason it is unreadable: a bad line never swallows the next."""
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return "not UTF-8"
    try:
        return next(csv.reader((text,)), [])
    except csv.Error as exc:
        return f"unreadable CSV row ({exc})"


def read_rba_csv(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """The column layout of the public RBA login dataset (Wiefling et al.), turned into
    the JSON Lines login record. Timestamps there carry no zone and are UTC."""
    header: list[str] | None = None
    pos: dict[str, int] = {}
    index_col: int | None = None
    for number, line in _lines(stream):
        if line is None:
            if header is None:
                yield number, f"unreadable CSV header: longer than {MAX_LINE_BYTES} bytes"
                return
            yield number, f"line longer than {MAX_LINE_BYTES} bytes"
            continue
        if header is None and line.startswith(codecs.BOM_UTF8):
            line = line[3:]
        if not line.strip():
            continue
        row = _csv_row(line)
        if header is None:
            if isinstance(row, str):
                yield number, f"unreadable CSV header: {row}"
                return
            missing = [c for c in RBA_COLUMNS if c not in row]
            if missing:
                yield number, f"not the RBA login layout: missing column(s) {', '.join(missing)}"
                return
            header = row
            pos = {name: i for i, name in enumerate(header)}
            index_col = pos.get("index", pos.get(""))
            continue
        if isinstance(row, str):
            yield number, row
            continue
        if len(row) != len(header):
            yield number, f"expected {len(header)} columns, found {len(row)}"
            continue
        yield number, _rba_record(row, pos, index_col)


# A whole number of milliseconds or an AS number, possibly written as a float ("682.0").
_CSV_INT = re.compile(r"([0-9]{1,20})(?:\.[0-9]*)?\Z")
_CSV_BOOL = {"true": True, "false": False}


def _rba_record(row: list[str], pos: dict[str, int],
                index_col: int | None) -> dict[str, Any] | str:
    def col(name: str) -> str:
        return row[pos[name]].strip()

    labels: dict[str, bool] = {}
    for name, key in (("Is Attack IP", "attack_ip"), ("Is Account Takeover", "account_takeover")):
        flag = _CSV_BOOL.get(col(name).lower())
        if flag is None:
            return f"column {name!r} must be True or False: {quote(col(name))}"
        labels[key] = flag
    stamp = col("Login Timestamp")
    if stamp and "+" not in stamp[10:] and not stamp.endswith("Z"):
        stamp += "+00:00"
    ident = row[index_col].strip() if index_col is not None else ""
    if not ident:
        ident = uuid.uuid5(uuid.NAMESPACE_URL, "\x1f".join(row)).hex
    success = col("Login Successful")
    record: dict[str, Any] = {
        "id": f"rba-{ident}",
        "account": f"rba-{col('User ID')}",
        "at": stamp,
        "success": _CSV_BOOL.get(success.lower(), success),  # not a bool: a bad line
        "ip": col("IP Address"),
        "country": col("Country") or None,
        "region": col("Region") or None,
        "city": col("City") or None,
        "user_agent": col("User Agent String") or None,
        "browser": col("Browser Name and Version") or None,
        "os": col("OS Name and Version") or None,
        "device_type": col("Device Type") or None,
        "_labels": labels,
    }
    for name, key in (("ASN", "asn"), ("Round-Trip Time [ms]", "rtt_ms")):
        raw = col(name)
        if raw:
            match = _CSV_INT.match(raw)
            # Anything else is kept as text, for validation to report with its field name.
            record[key] = int(match.group(1)) if match else raw
    if record["success"] is False:
        record["failure_reason"] = "bad_credentials"
    return record


# ----------------------------------------------------------------------------- parsing

Parsed = dict[str, Any]
Parser = Callable[[dict[str, Any], Window], Parsed]


def parse_account(obj: dict[str, Any], w: Window) -> Parsed:
    balances = r.json_object(obj, "balances", max_keys=64) or {}
    clean_balances = {}
    for asset_code, value in balances.items():
        r.asset_code(asset_code, "balances")
        clean_balances[asset_code] = r.decimal_value(
            value, f"balances.{asset_code}", positive=False
        )
    secret = r.totp_secret(obj, "totp_secret")
    enrolled = r.timestamp(obj, "totp_enrolled_at", w, required=secret is not None)
    return {
        "external_id": r.req_ident(obj, "id"),
        "created_at": r.req_timestamp(obj, "created_at", w),
        "country": r.country(obj, "country"),
        "email": r.email(obj, "email"),
        "full_name": r.text(obj, "full_name", 256, required=False),
        "phone": r.text(obj, "phone", 32, required=False),
        "date_of_birth": r.date_of_birth(obj, "date_of_birth", w),
        "address": r.text(obj, "address", 512, required=False),
        "balances": clean_balances,
        "totp_secret": secret,
        "totp_enrolled_at": enrolled,
    }


def parse_login(obj: dict[str, Any], w: Window) -> Parsed:
    """The hot path of bulk ingest. Each field is first checked inline for the common,
    plainly valid case; anything else goes to the same `records` function as before, in
    the same field order, so values and error messages are exactly those of `records`."""
    g = obj.get
    v = g("id")
    ext = v if type(v) is str and _ID(v) else r.req_ident(obj, "id")
    v = g("account")
    account = v if type(v) is str and _ID(v) else r.req_ident(obj, "account")
    v = g("at")
    at = _fast_time(v, w) if type(v) is str and len(v) <= 40 else None
    if at is None:
        at = r.req_timestamp(obj, "at", w)
    v = g("success")
    success = v if type(v) is bool else r.boolean(obj, "success")
    v = g("failure_reason")
    failure = v if v is None or _short_text(v, 32) else r.text(obj, "failure_reason", 32,
                                                              required=False)
    v = g("ip")
    ip = v if type(v) is str and _IPV4(v) else r.req_ip(obj, "ip")
    v = g("asn")
    asn = v if v is None or (type(v) is int and 0 <= v <= 2**32 - 1) else r.integer(
        obj, "asn", 0, 2**32 - 1)
    v = g("country")
    country = v if v is None or (type(v) is str and v in _COUNTRIES) else r.country(
        obj, "country")
    v = g("region")
    region = v if v is None or _short_text(v, 128) else r.text(obj, "region", 128,
                                                              required=False)
    v = g("city")
    city = v if v is None or _short_text(v, 128) else r.text(obj, "city", 128, required=False)
    v = g("lat")
    lat = v if v is None or (type(v) is float and -90.0 <= v <= 90.0) else r.number(
        obj, "lat", -90.0, 90.0)
    v = g("lon")
    lon = v if v is None or (type(v) is float and -180.0 <= v <= 180.0) else r.number(
        obj, "lon", -180.0, 180.0)
    v = g("user_agent")
    agent = v if v is None or _short_text(v, 512) else r.text(obj, "user_agent", 512,
                                                             required=False)
    v = g("browser")
    browser = v if v is None or _short_text(v, 64) else r.text(obj, "browser", 64,
                                                              required=False)
    v = g("os")
    os_name = v if v is None or _short_text(v, 64) else r.text(obj, "os", 64, required=False)
    v = g("device_type")
    device_type = v if v is None or _short_text(v, 32) else r.text(obj, "device_type", 32,
                                                                  required=False)
    v = g("device_id")
    device_id = v if v is None or _short_text(v, 128) else r.text(obj, "device_id", 128,
                                                                 required=False)
    v = g("rtt_ms")
    rtt = v if v is None or (type(v) is int and 0 <= v <= 10**7) else r.integer(
        obj, "rtt_ms", 0, 10**7)
    return {
        "external_id": ext,
        "account": account,
        "at": at,
        "success": success,
        "failure_reason": failure,
        "ip": ip,
        "asn": asn,
        "country": country,
        "region": region,
        "city": city,
        "latitude": lat,
        "longitude": lon,
        "user_agent": agent,
        "browser": browser,
        "os": os_name,
        "device_type": device_type,
        "device_id": device_id,
        "rtt_ms": rtt,
    }


# Fast-path recognisers for parse_login. Each accepts only values that the matching
# `records` function accepts unchanged; everything else takes the `records` path.
# An id: 1-64 printable ASCII characters without space (records.is_ident).
_ID = re.compile(r"[!-~]{1,64}\Z").match
# A canonical dotted quad (no leading zeros): ipaddress accepts it and str() of it is itself.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\Z").match
# Upper-case ISO codes (not ZZ): records.country returns them as they are.
_COUNTRIES = r.COUNTRY_CODES
_SURROGATE = re.compile("[\ud800-\udfff]").search


def _short_text(value: Any, max_len: int) -> TypeGuard[str]:
    """`records.check_text` passes: a string within max_len, no NUL, no lone surrogate
    (only a string with a non-ASCII character can hold one)."""
    return (type(value) is str and len(value) <= max_len and "\x00" not in value
            and (value.isascii() or not _SURROGATE(value)))


def _fast_time(value: str, w: Window) -> datetime | None:
    """`records.timestamp` for a well-formed zoned time within the window; None means
    "take the slow path" (which says what is wrong)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None or not w.earliest <= parsed <= w.latest:
        return None
    return parsed.astimezone(UTC)


def parse_security_event(obj: dict[str, Any], w: Window) -> Parsed:
    kind = r.choice(obj, "kind", SECURITY_EVENT_KINDS)
    book = kind in ADDRESS_BOOK_KINDS
    if not book and obj.get("address") is not None:
        raise BadRecord(f"field 'address' is only for address-book events "
                        f"({', '.join(sorted(ADDRESS_BOOK_KINDS))})")
    address = r.text(obj, "address", 128, required=book)
    return {
        "external_id": r.req_ident(obj, "id"),
        "account": r.req_ident(obj, "account"),
        "at": r.req_timestamp(obj, "at", w),
        "kind": kind,
        "ip": r.ip_address(obj, "ip", required=False),
        "device_id": r.text(obj, "device_id", 128, required=False),
        "details": r.json_document(obj, "details", max_keys=32, max_bytes=4096),
        "address": address,
    }


def parse_withdrawal(obj: dict[str, Any], w: Window) -> Parsed:
    return {
        "external_id": r.req_ident(obj, "id"),
        "account": r.req_ident(obj, "account"),
        "requested_at": r.req_timestamp(obj, "at", w),
        "asset": r.asset(obj, "asset"),
        "amount": r.amount(obj, "amount"),
        "available_balance": r.amount(obj, "available_balance", required=False),
        "address": r.req_text(obj, "address", 128),
        "address_label": r.text(obj, "address_label", 128, required=False),
        "ip": r.req_ip(obj, "ip"),
        "device_id": r.text(obj, "device_id", 128, required=False),
        "login_external_id": r.ident(obj, "login_id", required=False),
    }


def parse_session(obj: dict[str, Any], w: Window) -> Parsed:
    """A client's platform session (what a 2FA reset revokes). Inserted once; the
    platform updates ``last_seen_at`` and ``revoked_at`` in place. A session cannot be
    seen or end before it started."""
    external_id = r.req_ident(obj, "id")
    account = r.req_ident(obj, "account")
    created_at = r.req_timestamp(obj, "at", w)
    last_seen_at = r.timestamp(obj, "last_seen_at", w, required=False)
    revoked_at = r.timestamp(obj, "revoked_at", w, required=False)
    for name, value in (("last_seen_at", last_seen_at), ("revoked_at", revoked_at)):
        if value is not None and value < created_at:
            raise BadRecord(f"field {name!r} is before the session started (field 'at')")
    return {
        "external_id": external_id,
        "account": account,
        "created_at": created_at,
        "last_seen_at": last_seen_at,
        "ip": r.ip_address(obj, "ip", required=False),
        "device_id": r.text(obj, "device_id", 128, required=False),
        "revoked_at": revoked_at,
        "revoked_reason": (r.text(obj, "revoked_reason", 64, required=False)
                           or ("ended" if revoked_at is not None else None)),
    }


def parse_price(obj: dict[str, Any], w: Window) -> Parsed:
    """The price of one unit of ``asset`` in ``currency`` at ``at``."""
    asset = r.asset(obj, "asset")
    currency = r.asset(obj, "currency")
    if asset == currency:
        raise BadRecord("field 'currency' must differ from field 'asset'")
    return {
        "asset": asset,
        "currency": currency,
        "at": r.req_timestamp(obj, "at", w),
        "price": r.amount(obj, "price"),
    }


PARSERS: dict[str, Parser] = {
    "accounts": parse_account,
    "logins": parse_login,
    "security-events": parse_security_event,
    "withdrawals": parse_withdrawal,
    "sessions": parse_session,
    "prices": parse_price,
}
EVENT_TABLES: dict[str, Table] = {
    "logins": LoginEvent.__table__,  # type: ignore[dict-item]
    "security-events": SecurityEvent.__table__,  # type: ignore[dict-item]
    "withdrawals": Withdrawal.__table__,  # type: ignore[dict-item]
    "sessions": ClientSession.__table__,  # type: ignore[dict-item]
}


# ----------------------------------------------------------------------------- writing


class DriverInsert:
    """One bulk ``INSERT ... ON CONFLICT DO NOTHING`` per batch at the DB-API level, with
    values converted column-wise by the very bind processors SQLAlchemy would apply, so
    the stored values are those of `insert_ignoring_duplicates`, without SQLAlchemy's
    per-row parameter dictionaries (which cost more than the database's own work).

    - SQLite: the statement compiled once, run with ``executemany`` (in-process, no
      round trips).
    - PostgreSQL: each row as a line of ``COPY``'s text format, made by psycopg's own
      dumpers (in C, 3 us a row) where the rows are converted (in the parser process,
      if there is one), then copied into the table (`_Copy`). One statement per batch
      from arrays (``unnest``) cost the ingest 14 us a row in psycopg's array dumper,
      which is Python.
    """

    def __init__(self, sql: str, names: tuple[str, ...],
                 processors: list[Callable[[Any], Any] | None],
                 copy: _Copy | None = None) -> None:
        self.sql = sql
        self.getter = itemgetter(*names)
        self.processors = processors
        self.copy = copy

    @staticmethod
    def _plain_columns(table: Table, keys: tuple[str, ...]) -> bool:
        """Whether the rows name plain columns and leave out no column that SQLAlchemy
        would fill with a Python-side default."""
        if len(keys) < 2 or any(k not in table.c for k in keys):
            return False
        return all(
            column.key in keys or (column.default is None and column.onupdate is None)
            for column in table.c
        )

    @staticmethod
    def _processors(dialect: Dialect, table: Table, names: tuple[str, ...]
                    ) -> list[Callable[[Any], Any] | None]:
        return [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]

    @classmethod
    def for_sqlite(cls, dialect: Dialect, table: Table, keys: tuple[str, ...]
                   ) -> DriverInsert | None:
        if not cls._plain_columns(table, keys):
            return None
        compiled = sqlite.insert(table).on_conflict_do_nothing().compile(
            dialect=dialect, column_keys=list(keys))
        names = tuple(compiled.positiontup or ())
        if sorted(names) != sorted(keys):
            return None
        return cls(compiled.string, names, cls._processors(dialect, table, names))

    @classmethod
    def for_postgresql(cls, dialect: Dialect, table: Table, keys: tuple[str, ...]
                       ) -> DriverInsert | None:
        if not cls._plain_columns(table, keys):
            return None
        quote = dialect.identifier_preparer
        columns = ", ".join(quote.format_column(table.c[k]) for k in keys)
        target = quote.format_table(table)
        stored = (f"SELECT external_id FROM {target} WHERE external_id = ANY(%s)"
                  if "external_id" in keys else None)
        copy = _Copy(f"COPY {target} ({columns}) FROM STDIN", stored,
                     keys.index("external_id") if stored else None)
        return cls(copy.sql, keys, cls._processors(dialect, table, keys), copy)

    def convert(self, rows: list[dict[str, Any]], conn: Connection) -> Converted:
        """The rows as the driver takes them: tuples of the bind processors' values
        (SQLite); on PostgreSQL each row's id and line of COPY text (``conn`` lends
        psycopg's dumpers and is not used)."""
        getter = self.getter
        columns: list[Iterable[Any]] = list(zip(*[getter(row) for row in rows], strict=True))
        for i, proc in enumerate(self.processors):
            if proc is not None:
                columns[i] = map(proc, columns[i])
        values = list(zip(*columns, strict=True))
        return values if self.copy is None else self.copy.lines(conn, values)

    def select(self, converted: Converted, rows: list[int]) -> Converted:
        """These rows of converted rows, in this order."""
        return [converted[i] for i in rows]

    def execute(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        return self.insert(conn, self.convert(rows, conn))

    def insert(self, conn: Connection, converted: Converted) -> int:
        """Insert converted rows; return how many were inserted (the others were
        duplicates)."""
        if self.copy is not None:
            return self.copy.write(conn, converted)
        # sqlite3 sums sqlite3_changes() over executemany; a row skipped by ON CONFLICT
        # DO NOTHING counts 0.
        return int(conn.exec_driver_sql(self.sql, converted).rowcount)


class _Copy:
    """How PostgreSQL's bulk path writes a batch: ``COPY`` straight into the table (it
    inserts in bulk: 15 s a million rows here, where ``INSERT ... SELECT ... ON
    CONFLICT`` takes 20 to 23), in a savepoint. When an id of the batch is stored
    already (a file ingested again, a feed that resends an overlap), the savepoint is
    undone, the stored ids are looked up and the batch is copied again without them;
    and the next batches' ids are looked up first (an aborted COPY leaves its rows
    behind as dead tuples until vacuum), until a few in a row had none stored (a file
    that overlaps the stored ids only at its start). A table without an external id
    (screening's) takes a refused id as any refused value, as a plain insert would."""

    SAVEPOINT = "polysec_copy"
    CLEAN_LOOK_UPS = 3  # batches in a row without a stored id: copy straight again

    def __init__(self, sql: str, stored: str | None, id_index: int | None) -> None:
        self.sql = sql
        self.stored = stored  # the batch's ids that are stored already
        self.id_index = id_index
        self.look_first = False
        self.clean_look_ups = 0

    def write(self, conn: Connection, rows: Converted) -> int:
        """Insert the (id, line) rows; return how many were inserted (the others were
        duplicates)."""
        dbapi = conn.dialect.loaded_dbapi
        for _id, line in rows:
            if isinstance(line, Exception):  # one psycopg could not make
                raise DBAPIError.instance(self.sql, None, line, dbapi.Error)
        if self.look_first:
            fresh = self._unstored(conn, rows)
            self.clean_look_ups = self.clean_look_ups + 1 if len(fresh) == len(rows) else 0
            self.look_first = self.clean_look_ups < self.CLEAN_LOOK_UPS
            rows = fresh
        while rows:
            # Any other error leaves the transaction to the caller's savepoint (`_flush`),
            # which undoes this one with the batch.
            conn.exec_driver_sql(f"SAVEPOINT {self.SAVEPOINT}")
            try:
                self._copy(conn, self.sql, [line for _id, line in rows])
            except IntegrityError as exc:
                if self.stored is None or getattr(exc.orig, "sqlstate", None) != "23505":
                    raise
                conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {self.SAVEPOINT}")
                conn.exec_driver_sql(f"RELEASE SAVEPOINT {self.SAVEPOINT}")
                self.look_first, self.clean_look_ups = True, 0
                fresh = self._unstored(conn, rows)
                if len(fresh) == len(rows):  # not an id stored before
                    raise
                rows = fresh
                continue
            conn.exec_driver_sql(f"RELEASE SAVEPOINT {self.SAVEPOINT}")
            return len(rows)
        return 0

    def _unstored(self, conn: Connection, rows: Converted) -> Converted:
        assert self.stored is not None
        stored = set(conn.exec_driver_sql(self.stored, ([i for i, _line in rows],)).scalars())
        return [row for row in rows if row[0] not in stored]

    @staticmethod
    def _copy(conn: Connection, sql: str, lines: Converted) -> None:
        """The driver's error as SQLAlchemy's, as for any statement (a value the server
        refuses is a bad line)."""
        dbapi = conn.dialect.loaded_dbapi
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(sql) as copy:
                copy.write(b"\n".join(lines) + b"\n")
        except dbapi.Error as exc:
            raise DBAPIError.instance(sql, None, exc, dbapi.Error) from exc
        finally:
            cursor.close()

    def lines(self, conn: Connection, rows: list[tuple[Any, ...]]) -> Converted:
        """Each row as a line of COPY text, by psycopg's dumpers (formatted, never sent:
        the server is not asked). A row psycopg cannot dump (a NUL in a text, forced
        past validation) is its error instead, raised when the batch is written, so
        that it is one bad line as when psycopg dumps a statement's parameters. Each
        line goes with its row's id (for the look-up of ids stored before)."""
        refusals = (conn.dialect.loaded_dbapi.Error, ValueError, OverflowError)
        ids = ([None] * len(rows) if self.id_index is None
               else [row[self.id_index] for row in rows])
        try:
            return list(zip(ids, self._format(conn, rows), strict=True))
        except refusals:
            pass
        lines: list[tuple[Any, Any]] = []
        for row_id, row in zip(ids, rows, strict=True):
            try:
                lines.append((row_id, self._format(conn, [row])[0]))
            except refusals as exc:
                lines.append((row_id, exc))
        return lines

    @staticmethod
    def _format(conn: Connection, rows: list[tuple[Any, ...]]) -> list[Any]:
        from psycopg.copy import Copy, FileWriter  # PostgreSQL's driver

        buffer = io.BytesIO()
        dbapi_connection = conn.connection.dbapi_connection
        with dbapi_connection.cursor() as cursor, Copy(  # type: ignore[union-attr]
                cursor, binary=False, writer=FileWriter(buffer)) as copy:
            for row in rows:
                copy.write_row(row)
        lines: list[Any] = buffer.getvalue().split(b"\n")  # escaped within a value
        lines.pop()  # after the last line's end
        return lines


# Rows for DriverInsert.insert: tuples (SQLite), (id, line of COPY text) (PostgreSQL).
Converted = list[Any]


def driver_insert(dialect: Dialect, table: Table, keys: tuple[str, ...]) -> DriverInsert | None:
    """The SQLite or PostgreSQL bulk insert of rows with these keys, or None to take the
    general path (MariaDB, or rows that leave a column to SQLAlchemy)."""
    build = {"sqlite": DriverInsert.for_sqlite,
             "postgresql": DriverInsert.for_postgresql}.get(dialect.name)
    return None if build is None else build(dialect, table, keys)


@contextmanager
def sqlite_bulk_cache(session: Session) -> Iterator[None]:
    """A bigger (bounded) SQLite page cache while one ingest runs, then the old size."""
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        yield
        return
    before = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
    conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_INGEST_CACHE_KIB}")
    try:
        yield
    finally:
        with suppress(DBAPIError):
            conn.exec_driver_sql(f"PRAGMA cache_size = {before}")


@contextmanager
def _young_gc_only() -> Iterator[None]:
    """Pause the automatic cyclic GC while a file streams through (the caller collects
    the young generations after each batch). Automatic collections would trigger on
    every few hundred parsed records and, as batches survive them, promote them and
    run full collections over every object of the process: a fifth of the CPU time
    of a bulk load. Parsed records hold no reference cycles; refcounting frees them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


INGEST_LOCK = "ingest"  # its row of analysis_checkpoints


def take_turn(session: Session) -> None:
    """Ingests take turns: each holds the lock row until it commits. So ids are handed out
    in commit order, and a detector that has judged every id up to N (the watcher, an
    analyze run) never sees a lower id appear later, as it could when a long ingest
    committed after a short one that started after it."""
    checkpoint = cast(Table, AnalysisCheckpoint.__table__)
    bump = (update(checkpoint).where(checkpoint.c.name == INGEST_LOCK)
            .values(runs=checkpoint.c.runs + 1))
    if session.execute(bump).rowcount:  # type: ignore[attr-defined]
        return
    insert_ignoring_duplicates(session, checkpoint, [
        {"name": INGEST_LOCK, "login_id": 0, "security_event_id": 0, "runs": 0}], key="name")
    session.execute(bump)


def insert_ignoring_duplicates(session: Session, table: Table, rows: list[dict[str, Any]],
                               key: str = "external_id") -> None:
    """A multi-row insert that skips rows whose unique ``key`` exists (a concurrent ingest
    of the same file must not fail)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    elif dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    else:
        stmt = mysql.insert(table).on_duplicate_key_update({key: table.c[key]})
    session.execute(stmt, rows)


class LineCounts(Protocol):
    lines: int

    def add_bad(self, line: int, reason: str) -> None: ...


class Counts(LineCounts, Protocol):
    duplicates: int


def batches(records: Iterable[tuple[int, dict[str, Any] | str]], parse: Parser,
            window: Window, report: LineCounts, size: int,
            labels: list[tuple[str, dict[str, bool]]] | None = None,
            ) -> Iterator[list[tuple[int, Parsed]]]:
    """The parsed records in batches of ``size``; each line is counted in ``report`` and
    each bad line goes there as it is read. ``labels`` collects a dataset's attack
    labels (RBA)."""
    batch: list[tuple[int, Parsed]] = []
    for number, obj in records:
        report.lines += 1
        if type(obj) is not dict:
            report.add_bad(number, obj if isinstance(obj, str)
                           else f"expected a JSON object, not {r.json_type(obj)}")
            continue
        try:
            parsed = parse(obj, window)
        except BadRecord as exc:
            report.add_bad(number, str(exc))
            continue
        if labels is not None and (found := obj.get("_labels")) and any(found.values()):
            labels.append((parsed["external_id"], found))
        batch.append((number, parsed))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def unique_events(kind: str, batch: list[tuple[int, Parsed]], accounts: dict[str, uuid.UUID],
                  report: Counts, unknown_is_bad: bool) -> dict[str, Parsed]:
    """The batch's events that have a known account, the first of each id: a later line
    with the same id counts as a duplicate. Each parsed record becomes its row in place
    ("account" stays: the writers leave it out, and a batch can be written again)."""
    unique: dict[str, Parsed] = {}
    for number, parsed in batch:
        account_id = accounts.get(parsed["account"])
        if account_id is None:
            if unknown_is_bad:
                report.add_bad(number, f"unknown account {quote(parsed['account'])}")
            continue
        if parsed["external_id"] in unique:
            report.duplicates += 1
            continue
        parsed["account_id"] = account_id
        unique[parsed["external_id"]] = parsed
    if kind == "withdrawals":
        for row in unique.values():
            row["status"] = "pending"
    return unique


def account_ids(session: Session, cache: dict[str, uuid.UUID], external_ids: set[str]
                ) -> list[str]:
    """Fill ``cache`` with the row ids of these accounts; return those asked for that
    were not in it before (found or not). The cache is bounded: cleared first beyond
    500,000 accounts."""
    if len(cache) > 500_000:
        cache.clear()
    wanted = [e for e in external_ids if e not in cache]
    for chunk in _chunks(wanted, 2000):
        rows = session.execute(
            select(Account.external_id, Account.id).where(Account.external_id.in_(chunk))
        )
        cache.update({ext: acc for ext, acc in rows})
    return wanted


class Ingestor:
    def __init__(self, rt: Runtime, kind: str, *, skip_bad: bool = False,
                 batch_size: int = BATCH_SIZE, now: datetime | None = None) -> None:
        """`now`: the present that times are judged against (at most a day after it);
        by default the runtime's clock, read at each `run_in`. The demo passes its anchor."""
        if kind not in PARSERS:
            raise InputError(f"unknown ingest kind {kind!r}; use one of {', '.join(KINDS)}")
        self.rt = rt
        self.kind = kind
        self.skip_bad = skip_bad
        self.batch_size = batch_size
        self.now = now
        self.create_missing_accounts = False
        self.report = IngestReport(kind)
        self._accounts: dict[str, uuid.UUID] = {}
        self._writers: dict[tuple[str, tuple[str, ...]], DriverInsert | None] = {}
        self.labels: list[tuple[str, dict[str, bool]]] = []

    def run(self, records: Iterable[tuple[int, dict[str, Any] | str]]) -> IngestReport:
        with self.rt.transaction() as session, sqlite_bulk_cache(session), _young_gc_only():
            return self.run_in(session, records)

    def run_in(self, session: Session,
               records: Iterable[tuple[int, dict[str, Any] | str]]) -> IngestReport:
        """Validate and write `records` inside the caller's transaction (several kinds in
        one commit: `polysec simulate` writes each tick so). The report accumulates over
        calls; strict mode raises IngestRejected, which rolls the caller's transaction back."""
        take_turn(session)
        window = Window.around(self.now or self.rt.clock())
        keep_labels = self.create_missing_accounts
        for batch in batches(records, PARSERS[self.kind], window, self.report,
                             self.batch_size, self.labels if keep_labels else None):
            self._flush(session, batch)
            gc.collect(1)  # the young generations only: cheap, keeps memory flat
        return self._finish(session)

    def _finish(self, session: Session) -> IngestReport:
        self.report.bad.sort(key=lambda bad: bad.line)
        if self.report.bad_count and not self.skip_bad:
            raise IngestRejected(self.report)  # rolls the transaction back
        self._write_labels(session)
        self.report.written = True
        return self.report

    def run_prepared(self, session: Session, prepared: Iterable[Prepared]) -> IngestReport:
        """`run_in` for batches a parser process made ready (`parallel`): the same
        counts, messages, order of bad lines and undo of a refused batch; events only,
        no placeholders. Each batch goes through `_flush` as in `run_in`, with the
        parser's lines instead of parsed records."""
        take_turn(session)
        for batch in prepared:
            self.report.lines += batch.lines
            for line, reason in batch.bad:
                self.report.add_bad(line, reason)
            if batch.lines_info:
                # (line number, (its index in the batch, the batch)) as _flush takes them
                self._flush(session, [(info[0], (i, batch))
                                      for i, info in enumerate(batch.lines_info)])
            gc.collect(1)
        return self._finish(session)

    def _write_prepared(self, session: Session, items: list[tuple[int, Any]]) -> None:
        """`_write_events` for lines of one prepared batch: (line number, (its index in
        the batch, the batch))."""
        batch: Prepared = items[0][1][1]
        unique: dict[str, int] = {}  # external id -> its row in batch.converted
        for _number, (i, _batch) in items:
            number, external_id, unknown = batch.lines_info[i]
            if unknown is not None:
                self.report.add_bad(number, unknown)
            elif external_id in unique:
                self.report.duplicates += 1
            else:
                unique[external_id] = batch.row_of[i]
        table = EVENT_TABLES[self.kind]
        if self._writing:
            if unique:
                writer = self._prepared_writer(session, table, batch.keys)
                rows = list(unique.values())
                converted = (batch.converted if len(rows) == batch.rows
                             else writer.select(batch.converted, rows))
                self._count_inserted(len(rows), writer.insert(session.connection(),
                                                              converted))
            return
        existing = self._existing(session, table, list(unique))
        self.report.duplicates += len(existing)
        self.report.inserted += len(unique) - len(existing)

    def _prepared_writer(self, session: Session, table: Table, keys: tuple[str, ...]
                         ) -> DriverInsert:
        if (table.name, keys) not in self._writers:
            self._writers[(table.name, keys)] = driver_insert(session.get_bind().dialect,
                                                               table, keys)
        writer = self._writers[(table.name, keys)]
        assert writer is not None  # the parser process made rows that it takes
        return writer

    def _write_labels(self, session: Session) -> None:
        """Keep a dataset's attack labels (RBA: Is Attack IP, Is Account Takeover) as
        ground truth beside the demo's, so detection quality can be measured on it."""
        if not self.labels:
            return
        scenarios = {"attack_ip": 9001, "account_takeover": 9002}
        now = self.rt.clock()
        for label, scenario_id in scenarios.items():
            if session.get(DemoScenario, scenario_id) is None:
                session.add(DemoScenario(
                    id=scenario_id, kind=f"rba_{label}", started_at=now,
                    description=f"logins labelled '{label}' in the RBA dataset",
                ))
        session.flush()
        rows = [
            {"scenario_id": scenarios[label], "event_type": "login", "external_id": ext}
            for ext, labels in self.labels for label, flag in labels.items() if flag
        ]
        table: Table = DemoScenarioEvent.__table__  # type: ignore[assignment]
        for start in range(0, len(rows), BATCH_SIZE):
            chunk = rows[start : start + BATCH_SIZE]
            existing = {
                (sid, ext) for sid, ext in session.execute(
                    select(table.c.scenario_id, table.c.external_id).where(
                        table.c.external_id.in_({row["external_id"] for row in chunk})
                    )
                )
            }
            fresh = [r for r in chunk if (r["scenario_id"], r["external_id"]) not in existing]
            if fresh:
                session.execute(insert(table), fresh)
        self.labels.clear()

    # Once strict mode has seen a bad line nothing will be kept: stop writing, keep checking.
    @property
    def _writing(self) -> bool:
        return self.skip_bad or self.report.bad_count == 0

    def _flush(self, session: Session, batch: list[tuple[int, Any]]) -> None:
        """Write one batch so that it can be undone. Should the database refuse a value
        that validation let through (a collation that folds two ids into one, a server's
        own limit), the batch is undone and written again row by row, each row in a
        savepoint of its own, and each refused row is one bad line."""
        if not batch:
            return
        write: Callable[[Session, list[tuple[int, Any]]], None] = (
            self._write_prepared if isinstance(batch[0][1], tuple)
            else {"accounts": self._write_accounts,
                  "prices": self._write_prices}.get(self.kind, self._write_events))
        mark = self._mark()
        undo = self._sqlite_undo(session)
        try:
            if undo is not None:
                write(session, batch)
            else:
                with session.begin_nested():
                    write(session, batch)
            return
        except (StatementError, ValueError, OverflowError) as exc:
            if not refused_value(exc):
                raise
            if undo is not None:
                undo()
            self._rewind(mark)
        for item in batch:
            mark = self._mark()
            try:
                with session.begin_nested():
                    write(session, [item])
            except (StatementError, ValueError, OverflowError) as exc:
                if not refused_value(exc):
                    raise
                self._rewind(mark)
                self.report.add_bad(item[0], f"refused by the database ({db_reason(exc)})")

    def _sqlite_undo(self, session: Session) -> Callable[[], None] | None:
        """On SQLite, how to undo one batch of events without a savepoint: delete the
        rows above the table's highest id before it. A savepoint there costs a sixth of
        bulk ingest (SQLite copies every page the batch touches again into a statement
        journal); a failed row is undone by SQLite itself, and the batch holds the write
        lock (BEGIN IMMEDIATE), so the ids above are all its own. Elsewhere (and for
        accounts, three inserts per row) None: a savepoint."""
        if self.kind not in EVENT_TABLES or session.get_bind().dialect.name != "sqlite":
            return None
        table = EVENT_TABLES[self.kind]
        before = session.execute(select(func.max(table.c.id))).scalar() or 0

        def undo() -> None:
            session.execute(delete(table).where(table.c.id > before))

        return undo

    def _mark(self) -> tuple[int, int, int, int]:
        report = self.report
        return report.inserted, report.duplicates, report.bad_count, len(report.bad)

    def _rewind(self, mark: tuple[int, int, int, int]) -> None:
        """Forget what a write rolled back to its savepoint had counted and cached."""
        report = self.report
        report.inserted, report.duplicates, report.bad_count = mark[:3]
        del report.bad[mark[3]:]
        self._accounts.clear()  # may hold placeholder accounts that were rolled back

    def _resolve_accounts(self, session: Session, external_ids: set[str]) -> None:
        wanted = account_ids(session, self._accounts, external_ids)
        if self.create_missing_accounts and self._writing:
            missing = [e for e in wanted if e not in self._accounts]
            if missing:
                self._create_placeholder_accounts(session, missing)

    def _create_placeholder_accounts(self, session: Session, external_ids: list[str]) -> None:
        """Accounts for a login dataset that carries no account records (RBA): a
        synthetic address under the reserved .invalid domain, encrypted like any other."""
        now = self.rt.clock()
        rows = []
        for ext in external_ids:
            row_id = uuid.uuid4()
            email = f"{ext}@dataset.invalid"
            rows.append(
                {
                    "id": row_id,
                    "external_id": ext,
                    "created_at": now,
                    "country": None,
                    "status": "active",
                    "email_enc": self.rt.cipher.encrypt(
                        email, table="accounts", column="email", row_id=row_id
                    ),
                    "email_bidx": self.rt.blind_index.email(email),
                    "ingested_at": now,
                }
            )
            self._accounts[ext] = row_id
        session.execute(insert(Account), rows)

    def _existing(self, session: Session, table: Table, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(ids, 2000):
            found.update(session.scalars(select(table.c.external_id).where(table.c.external_id.in_(chunk))))
        return found

    def _write_events(self, session: Session, batch: list[tuple[int, Parsed]]) -> None:
        self._resolve_accounts(session, {p["account"] for _, p in batch})
        # Unless its placeholder was not created only because nothing is written.
        unknown_is_bad = not self.create_missing_accounts or self._writing
        unique = unique_events(self.kind, batch, self._accounts, self.report, unknown_is_bad)
        table = EVENT_TABLES[self.kind]
        writer = self._driver_insert(session, table, unique) if self._writing else None
        if writer is not None:
            rows = list(unique.values())
            self._count_inserted(len(rows), writer.execute(session.connection(), rows))
            return
        existing = self._existing(session, table, list(unique))
        self.report.duplicates += len(existing)
        rows = [row for ext, row in unique.items() if ext not in existing]
        self.report.inserted += len(rows)
        if self._writing:
            insert_ignoring_duplicates(session, table, [_without_account(row) for row in rows])

    def _count_inserted(self, rows: int, inserted: int) -> None:
        """Rows given to ``INSERT ... ON CONFLICT DO NOTHING``, and how many it inserted:
        the others' ids were stored already (no look-up of the ids first)."""
        self.report.inserted += inserted
        self.report.duplicates += rows - inserted

    def _driver_insert(self, session: Session, table: Table, rows: dict[str, Parsed]
                       ) -> DriverInsert | None:
        """The SQLite or PostgreSQL bulk insert for these rows, or None to take the
        general path (MariaDB)."""
        if not rows:
            return None
        first = next(iter(rows.values()))
        keys = tuple(k for k in first if k != "account")  # the getter picks the columns
        if any(len(row) != len(first) for row in rows.values()):
            return None  # rows of different shapes (not produced by our parsers)
        key = (table.name, keys)
        if key not in self._writers:
            self._writers[key] = driver_insert(session.get_bind().dialect, table, keys)
        return self._writers[key]

    def _write_prices(self, session: Session, batch: list[tuple[int, Parsed]]) -> None:
        """Prices are keyed by (asset, currency, at): a price sent again is a duplicate,
        the first one stays (as with every other event)."""
        unique: dict[tuple[str, str, datetime], Parsed] = {}
        for _number, parsed in batch:
            key = (parsed["asset"], parsed["currency"], parsed["at"])
            if key in unique:
                self.report.duplicates += 1
            else:
                unique[key] = parsed
        if not unique:
            return
        p = AssetPrice
        times = [key[2] for key in unique]
        existing: set[tuple[str, str, datetime]] = set()  # aware times compare across zones
        for assets in _chunks(sorted({key[0] for key in unique}), 500):
            existing.update((asset, currency, at) for asset, currency, at in session.execute(
                select(p.asset, p.currency, p.at).where(
                    p.currency.in_({key[1] for key in unique}), p.asset.in_(assets),
                    p.at >= min(times), p.at <= max(times))))
        fresh = [row for key, row in unique.items() if key not in existing]
        self.report.duplicates += len(unique) - len(fresh)
        self.report.inserted += len(fresh)
        if self._writing and fresh:
            now = self.rt.clock()
            insert_ignoring_duplicates(session, cast(Table, p.__table__),
                                       [{**row, "ingested_at": now} for row in fresh],
                                       key="asset")

    def _write_accounts(self, session: Session, batch: list[tuple[int, Parsed]]) -> None:
        unique: dict[str, Parsed] = {}
        for _number, parsed in batch:
            if parsed["external_id"] in unique:
                self.report.duplicates += 1
            else:
                unique[parsed["external_id"]] = parsed
        table: Table = Account.__table__  # type: ignore[assignment]
        existing = self._existing(session, table, list(unique))
        self.report.duplicates += len(existing)
        fresh = [p for ext, p in unique.items() if ext not in existing]
        self.report.inserted += len(fresh)
        if not self._writing or not fresh:
            return
        now = self.rt.clock()
        encrypt = self.rt.cipher.encrypt
        accounts, balances, enrolments = [], [], []
        for p in fresh:
            row_id = uuid.uuid4()
            row: dict[str, Any] = {
                "id": row_id,
                "external_id": p["external_id"],
                "created_at": p["created_at"],
                "country": p["country"],
                "status": "active",
                "email_bidx": self.rt.blind_index.email(p["email"]),
                "ingested_at": now,
            }
            for column in ("email", "full_name", "phone", "date_of_birth", "address"):
                value = p[column]
                row[f"{column}_enc"] = (
                    None if value is None
                    else encrypt(value, table="accounts", column=column, row_id=row_id)
                )
            accounts.append(row)
            for asset_code, balance in p["balances"].items():
                balances.append({
                    "account_id": row_id, "asset": asset_code, "amount": balance,
                    "updated_at": now,
                })
            if p["totp_secret"]:
                enrolment_id = uuid.uuid4()
                enrolments.append(
                    {
                        "id": enrolment_id,
                        "account_id": row_id,
                        "secret_enc": encrypt(
                            p["totp_secret"], table="totp_enrolments", column="secret",
                            row_id=enrolment_id,
                        ),
                        "enrolled_at": p["totp_enrolled_at"],
                    }
                )
        session.execute(insert(Account), accounts)
        if balances:
            session.execute(insert(Balance), balances)
        if enrolments:
            session.execute(insert(TotpEnrolment), enrolments)


# MariaDB errors about a value that pymysql reports as OperationalError or InternalError:
# incorrect datetime value, incorrect string value, invalid character string, value out of
# range, invalid JSON text, CHECK constraint failed (a JSON column's json_valid()).
_MARIADB_VALUE_ERRORS = frozenset({1292, 1366, 1367, 1690, 3140, 4025})


def refused_value(exc: BaseException) -> bool:
    """Whether a write failed on a value of its rows (then the row is a bad line), not
    on the connection or the program (then the ingest fails)."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, DBAPIError):
        args: tuple[Any, ...] = getattr(exc.orig, "args", ())
        return bool(args) and isinstance(args[0], int) and args[0] in _MARIADB_VALUE_ERRORS
    if isinstance(exc, StatementError):  # raised while binding the parameters
        return isinstance(exc.orig, ValueError | OverflowError)
    return isinstance(exc, ValueError | OverflowError)  # the driver could not bind a value


def db_reason(exc: BaseException) -> str:
    """The database's own first line, shortened (it may quote the value)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    detail = lines[0][:120] if lines else ""
    return f"{type(orig).__name__}: {detail}" if detail else type(orig).__name__


def _without_account(row: Parsed) -> Parsed:
    """The row without the account's external id (no column; kept in the parsed record
    so that a batch can be written again)."""
    copy = row.copy()
    del copy["account"]
    return copy


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ingest_stream(
    rt: Runtime, kind: str, stream: IO[bytes], *, fmt: str = "jsonl", skip_bad: bool = False
) -> IngestReport:
    ingestor = Ingestor(rt, kind, skip_bad=skip_bad)
    if fmt == "jsonl" and kind in EVENT_TABLES and parallel.worth_a_process(stream, rt.engine):
        batches_of = parallel.prepared_batches(
            stream, parse_in_process, rt.engine.url.render_as_string(hide_password=False),
            kind, rt.clock(), ingestor.batch_size)
        # closing: the parser process stops with the ingest, whatever ends it
        with closing(batches_of) as prepared, rt.transaction() as session, \
                sqlite_bulk_cache(session), _young_gc_only():
            return ingestor.run_prepared(session, prepared)
    if fmt == "jsonl":
        records = read_jsonl(stream)
    elif fmt == "rba-csv":
        if kind != "logins":
            raise InputError("--format rba-csv is only for `ingest logins`")
        ingestor.create_missing_accounts = True
        records = read_rba_csv(stream)
    else:
        raise InputError(f"unknown input format {fmt!r}; use jsonl or rba-csv")
    return ingestor.run(records)


def parse_in_process(pipe: Any, db_url: str, kind: str, now: datetime, batch_size: int,
                     stream: IO[bytes]) -> None:
    """The parser process's work (`parallel.prepared_batches` runs it): read, validate,
    look up accounts (read-only, no snapshot kept between batches) and convert each
    batch, and send it. What the ingest decides (duplicates, what is written) it leaves
    to the ingest: each line goes with its id and, for an unknown account, its reason."""
    from polysec_tui.db.engine import make_engine, session_factory

    engine = make_engine(db_url)
    table = EVENT_TABLES[kind]
    accounts: dict[str, uuid.UUID] = {}
    writers: dict[tuple[str, ...], DriverInsert | None] = {}
    counts = Prepared()
    with session_factory(engine)() as session:
        for batch in batches(read_jsonl(stream), PARSERS[kind], Window.around(now), counts,
                             batch_size):
            account_ids(session, accounts, {p["account"] for _, p in batch})
            session.rollback()
            rows: list[Parsed] = []
            for number, parsed in batch:
                account_id = accounts.get(parsed["account"])
                if account_id is None:
                    counts.add_line(number, parsed["external_id"],
                                    f"unknown account {quote(parsed['account'])}")
                    continue
                parsed["account_id"] = account_id
                if kind == "withdrawals":
                    parsed["status"] = "pending"
                counts.add_line(number, parsed["external_id"], None)
                rows.append(parsed)
            if rows:
                counts.keys = tuple(k for k in rows[0] if k != "account")
                if counts.keys not in writers:
                    writers[counts.keys] = driver_insert(engine.dialect, table, counts.keys)
                writer = writers[counts.keys]
                if writer is None or any(len(row) != len(rows[0]) for row in rows):
                    raise ValueError("rows the bulk insert cannot take")  # not our parsers
                counts.converted = writer.convert(rows, session.connection())
            pipe.send(counts.take())
            gc.collect(1)
        if counts.lines:  # lines after the last batch, all bad or blank
            pipe.send(counts.take())
    engine.dispose()
